"""Champion pointer: conditional promotion, bounded staleness, refusal of tampered artifacts."""

import pytest

from kclocal.data import stride
from kcprice import registry
from kcprice.errors import ChampionChangedError
from kcprice.training import train


@pytest.fixture(scope="module")
def two_models():
    from kcprice.dataset import read_sales

    a, _ = read_sales(stride(4, 0))
    b, _ = read_sales(stride(4, 1))
    return train(a, evaluate_splits=False), train(b, evaluate_splits=False)


def publish_and_promote(aws, model, etag):
    registry.publish_version(aws.s3, aws.bucket, model.artifact, model.meta)
    return registry.promote(aws.s3, aws.bucket, model.meta, etag, {})


def test_promotion_is_conditional(aws, two_models):
    a, b = two_models
    etag = publish_and_promote(aws, a, None)
    with pytest.raises(ChampionChangedError):
        publish_and_promote(aws, b, None)  # "first model" when there already is one
    with pytest.raises(ChampionChangedError):
        publish_and_promote(aws, b, '"0000"')  # a stale etag
    publish_and_promote(aws, b, etag)
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == b.meta["version"]


def test_racing_promotions_leave_one_champion(aws, two_models):
    a, b = two_models
    base = publish_and_promote(aws, a, None)
    publish_and_promote(aws, b, base)
    with pytest.raises(ChampionChangedError):
        publish_and_promote(aws, a, base)  # the loser of the race read the same etag
    assert registry.read_champion(aws.s3, aws.bucket)[0]["version"] == b.meta["version"]


def test_cache_notices_a_new_champion_within_its_ttl(aws, two_models):
    a, b = two_models
    now = [0.0]
    cache = registry.ChampionCache(aws.s3, aws.bucket, ttl=60, clock=lambda: now[0])
    etag = publish_and_promote(aws, a, None)
    assert cache.get()[0].version == a.meta["version"]
    publish_and_promote(aws, b, etag)
    now[0] = 59.0
    assert cache.get()[0].version == a.meta["version"]  # within the staleness bound
    now[0] = 60.0
    assert cache.get()[0].version == b.meta["version"]


def test_tampered_artifact_is_refused_and_the_previous_champion_keeps_serving(aws, two_models):
    a, b = two_models
    now = [0.0]
    cache = registry.ChampionCache(aws.s3, aws.bucket, ttl=1, clock=lambda: now[0])
    etag = publish_and_promote(aws, a, None)
    assert cache.get()[0].version == a.meta["version"]
    registry.publish_version(aws.s3, aws.bucket, b.artifact, b.meta)
    blob = bytearray(b.artifact)
    blob[len(blob) // 2] ^= 0xFF
    aws.s3.put_object(Bucket=aws.bucket, Key=f"models/{b.meta['version']}/model.npz", Body=bytes(blob))
    registry.promote(aws.s3, aws.bucket, b.meta, etag, {})
    now[0] = 5.0
    assert cache.get()[0].version == a.meta["version"]
    now[0] = 10.0
    assert cache.get()[0].version == a.meta["version"]  # and it is not re-downloaded every check
