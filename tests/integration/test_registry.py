"""Champion pointer: conditional promotion, bounded staleness, refusal of tampered artifacts, and a serving cache
that survives a store that stops answering for a while. Reads use PredictFunction's role, writes RetrainFunction's."""

import pytest
from botocore.exceptions import ClientError

from kclocal.data import stride
from kcprice import registry
from kcprice.errors import ChampionChangedError, StoreUnavailableError


@pytest.fixture(scope="session")  # not module: xdist workers interleave modules, and each return refitted both
def two_models():
    from kcprice.dataset import read_sales
    from kcprice.training import train

    a, _ = read_sales(stride(8, 0))
    b, _ = read_sales(stride(8, 1))
    return train(a, evaluate_splits=False), train(b, evaluate_splits=False)


@pytest.fixture
def writer(aws):
    return aws.client("s3", "RetrainFunction")


def publish_and_promote(aws, model, etag, s3=None):
    s3 = s3 or aws.client("s3", "RetrainFunction")
    registry.publish_version(s3, aws.bucket, model.artifact, model.meta)
    return registry.promote(s3, aws.bucket, model.meta, etag, {})


class CountingS3:
    """PredictFunction's client, counting GetObject calls by key, with failures injected on demand."""

    def __init__(self, aws):
        self.client, self.gets, self.fail_with = aws.client("s3", "PredictFunction"), [], None

    def get_object(self, **kw):
        self.gets.append(kw["Key"])
        if self.fail_with:
            code, status = self.fail_with
            raise ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")
        return self.client.get_object(**kw)


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


def test_cache_notices_a_new_champion_within_its_ttl_and_downloads_each_artifact_once(aws, two_models):
    a, b = two_models
    now = [0.0]
    s3 = CountingS3(aws)
    cache = registry.ChampionCache(s3, aws.bucket, ttl=60, clock=lambda: now[0])
    etag = publish_and_promote(aws, a, None)
    assert cache.get()[0].version == a.meta["version"]
    publish_and_promote(aws, b, etag)
    now[0] = 59.0
    assert cache.get()[0].version == a.meta["version"]  # within the staleness bound
    now[0] = 60.0
    assert cache.get()[0].version == b.meta["version"]
    for t in (61.0, 130.0, 200.0):  # unchanged pointer: a conditional GET each ttl, no new download
        now[0] = t
        assert cache.get()[0].version == b.meta["version"]
    artifacts = [k for k in s3.gets if k.endswith("model.npz")]
    assert artifacts == [f"models/{a.meta['version']}/model.npz", f"models/{b.meta['version']}/model.npz"]
    assert s3.gets.count(registry.CHAMPION_KEY) == 4  # at 0, 60, 130 and 200 (59 and 61 are within a ttl)


def test_tampered_artifact_is_refused_and_the_previous_champion_keeps_serving(aws, two_models, writer):
    a, b = two_models
    now = [0.0]
    s3 = CountingS3(aws)
    cache = registry.ChampionCache(s3, aws.bucket, ttl=1, clock=lambda: now[0])
    etag = publish_and_promote(aws, a, None)
    assert cache.get()[0].version == a.meta["version"]
    registry.publish_version(writer, aws.bucket, b.artifact, b.meta)
    blob = bytearray(b.artifact)
    blob[len(blob) // 2] ^= 0xFF
    writer.put_object(Bucket=aws.bucket, Key=f"models/{b.meta['version']}/model.npz", Body=bytes(blob))
    registry.promote(writer, aws.bucket, b.meta, etag, {})
    for t in (5.0, 10.0, 15.0):
        now[0] = t
        assert cache.get()[0].version == a.meta["version"]
    # the bad artifact was downloaded once and refused; later checks see the same pointer and skip it
    assert [k for k in s3.gets if k.endswith("model.npz")].count(f"models/{b.meta['version']}/model.npz") == 1


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500), ("ThrottlingException", 400)])
def test_a_store_that_stops_answering_does_not_stop_serving(aws, two_models, code, status):
    a, _ = two_models
    now = [0.0]
    s3 = CountingS3(aws)
    cache = registry.ChampionCache(s3, aws.bucket, ttl=60, clock=lambda: now[0])
    publish_and_promote(aws, a, None)
    assert cache.get()[0].version == a.meta["version"]
    s3.fail_with = (code, status)
    for t in range(60, 200):  # a request every second while S3 fails for 140 s
        now[0] = float(t)
        assert cache.get()[0].version == a.meta["version"]  # still serving
    tried = s3.gets.count(registry.CHAMPION_KEY) - 1
    assert 4 <= tried <= 10, tried  # backing off (0.5 s doubling up to the ttl), not one call per request
    s3.fail_with = None
    now[0] = 400.0
    assert cache.get()[0].version == a.meta["version"]


def test_a_store_that_does_not_answer_before_the_first_load_is_503_not_500(aws, two_models):
    s3 = CountingS3(aws)
    s3.fail_with = ("SlowDown", 503)
    cache = registry.ChampionCache(s3, aws.bucket, ttl=60)
    with pytest.raises(StoreUnavailableError):
        cache.get()


def test_access_denied_is_not_mistaken_for_a_passing_failure(aws, two_models):
    a, _ = two_models
    now = [0.0]
    s3 = CountingS3(aws)
    cache = registry.ChampionCache(s3, aws.bucket, ttl=1, clock=lambda: now[0])
    publish_and_promote(aws, a, None)
    cache.get()
    s3.fail_with = ("AccessDenied", 403)  # a broken deployment: loud, not hidden behind the loaded model
    now[0] = 5.0
    with pytest.raises(ClientError, match="AccessDenied"):
        cache.get()
