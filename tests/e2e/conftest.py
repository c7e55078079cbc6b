import pytest

from kclocal.stack import LocalStack
from tests.policy import CallJournal


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The whole local stack on ephemeral loopback ports, seeded (first model + precomputed inventory), S3
    notifications delivered as Lambda delivers them. Session scope, not package: under xdist a worker interleaves
    tiers, and a package-scoped stack was torn down and seeded again between them (34 s each time). At the end,
    every AWS call its functions made is checked against their template policies."""
    folder = tmp_path_factory.mktemp("stack")
    s = LocalStack(
        0,
        0,
        {"ModelTtlSeconds": "1"},
        say=lambda _: None,
        retry_delays=(1.0, 2.0),
        log_dir=folder,
        journal=folder / "calls.jsonl",
    ).start()
    try:
        s.seed()
        yield s
    finally:
        s.stop()
    CallJournal(s.journal, s.spec).assert_allowed()
