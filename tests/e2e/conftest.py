import os

import pytest

from kclocal.stack import LocalStack


@pytest.fixture(scope="package")
def stack():
    """The whole local stack on ephemeral loopback ports, seeded (first model + precomputed inventory).
    Package scope: it stops when the e2e tests are done, before other tiers set up their own endpoints."""
    saved = dict(os.environ)
    s = LocalStack(0, 0, {"ModelTtlSeconds": "1"}, say=lambda _: None).start()
    s.seed()
    yield s
    s.stop()
    os.environ.clear()
    os.environ.update(saved)
