"""Fixtures shared by every tier: the shipped data set and a small model trained once per session.

Threads: every test process and every function the local stack starts runs OpenMP (scikit-learn's trees) on one
thread. Several fits at once with one thread per core each are fast; with every fit taking every core they
oversubscribe a small machine (measured on 2 cores: three concurrent 7,317-row fits took 266-281 s with 2 threads
each against 6.2-6.4 s with 1)."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / scikit-learn load their thread pools

import pytest
from threadpoolctl import threadpool_limits

threadpool_limits(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "kc_house_data.csv"


def pytest_collection_finish(session):
    """`make test` relies on --dist loadgroup keeping each xdist_group on one worker; a pytest / pytest-xdist
    pairing that loses the groups (pytest-xdist#1386: pytest 9.2's node ids) would silently build the e2e stack and
    the quality model on both workers. Say so instead."""
    if getattr(session.config.option, "loadgroup", False):
        lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
        if lost:
            raise pytest.UsageError(f"--dist loadgroup lost the xdist_group of {len(lost)} tests, e.g. {lost[0]}")


@pytest.fixture(scope="session")
def kc_bytes() -> bytes:
    return DATA.read_bytes()


@pytest.fixture(scope="session")
def kc_sales(kc_bytes):
    from kcprice.dataset import read_sales

    sales, report = read_sales(kc_bytes)
    assert report.ok, report.problems
    return sales


@pytest.fixture(scope="session")
def small_model():
    """A model trained once per session on an eighth of the sales (tests need a model, not a good one)."""
    from kclocal.data import stride
    from kcprice.dataset import read_sales
    from kcprice.training import train

    sales, _ = read_sales(stride(8))
    return train(sales, evaluate_splits=False, extra_meta={"lineage": {"source_key": "tests"}})


@pytest.fixture
def house() -> dict:
    """A real row of the data set (id 7129300520), as the API takes it."""
    from kcprice.schema import EXAMPLE_HOUSE

    return dict(EXAMPLE_HOUSE)
