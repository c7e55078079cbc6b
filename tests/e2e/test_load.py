import pytest

from kclocal.load import report, run_locust

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]  # one seeded stack, on one worker


def test_short_load_run_has_no_errors(stack):
    stats = run_locust(stack.bridge.url, users=4, seconds=5)
    print("\n" + report(stats))
    # No throughput figure here (the machine may be busy): `make load` measures it. Every request answered.
    assert stats["errors"] == 0 and stats["requests"] > 0
    assert set(stats["by_route"]) == {
        "POST /predict (1)",
        "POST /predict (20)",
        "GET /houses/{id}/price",
        "GET /health",
    }
