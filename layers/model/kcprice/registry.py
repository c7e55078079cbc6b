"""Model registry in S3.

  models/<version>/model.npz   the artifact (arrays + embedded JSON metadata)
  models/<version>/model.json  the same metadata plus lineage; written last, so a version with a model.json is whole
  models/champion.json         the pointer: {version, artifact_key, artifact_sha256, ...}

The pointer only moves by conditional write (If-None-Match: * for the first model, If-Match: <etag> after), so two
retrains racing can never interleave: the loser gets ChampionChangedError and retries on top of the winner.
Readers verify the artifact's sha256 against the pointer before serving it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kcprice import layout
from kcprice.errors import (
    ArtifactIntegrityError,
    ChampionChangedError,
    NoModelError,
    NotFoundError,
    StoreUnavailableError,
)
from kcprice.predictor import Predictor
from kcprice.storage import error_code, get_bytes, get_json, is_missing, is_transient, lost_condition, put_json

CHAMPION_KEY = layout.CHAMPION
NO_MODEL = "no model has been promoted yet: upload sales to incoming/ to train one"
log = logging.getLogger(__name__)


def version_prefix(version: str) -> str:
    return layout.version(version)


def publish_version(s3, bucket: str, artifact: bytes, meta: dict[str, Any], extra: dict[str, bytes] | None = None):
    """Write a version's files; model.json goes last and marks the version complete."""
    prefix = version_prefix(meta["version"])
    meta = {**meta, "files": sorted(["model.npz", "model.json", *(extra or {})])}
    s3.put_object(Bucket=bucket, Key=prefix + "model.npz", Body=artifact, ContentType="application/octet-stream")
    for name, body in (extra or {}).items():
        ctype = {"png": "image/png", "html": "text/html", "json": "application/json"}.get(name.rsplit(".")[-1])
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=body, ContentType=ctype or "application/octet-stream")
    put_json(s3, bucket, prefix + "model.json", meta)


def read_champion(s3, bucket: str) -> tuple[dict | None, str | None]:
    """(pointer, etag), or (None, None) before the first promotion."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=CHAMPION_KEY)
    except ClientError as e:
        if is_missing(e):
            return None, None
        raise
    return json.loads(obj["Body"].read()), obj["ETag"]


def promote(
    s3,
    bucket: str,
    meta: dict[str, Any],
    expected_etag: str | None,
    reason: dict[str, Any],
    previous_version: str | None = None,
) -> str:
    """Atomically make `meta` the champion if the pointer is still what we read (etag), else ChampionChangedError.
    previous_version: the champion it replaces (default: the model it was trained on top of, from its lineage)."""
    pointer = {
        "version": meta["version"],
        "artifact_key": version_prefix(meta["version"]) + "model.npz",
        "artifact_sha256": meta["artifact_sha256"],
        "metadata_key": version_prefix(meta["version"]) + "model.json",
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "previous_version": previous_version or meta.get("lineage", {}).get("parent_version"),
        "reason": reason,
    }
    condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
    try:
        return put_json(s3, bucket, CHAMPION_KEY, pointer, **condition)
    except ClientError as e:
        if lost_condition(e):
            raise ChampionChangedError("the champion changed while this model was trained") from e
        raise


# What GET /model shows callers outside the team (ExposeLineage=false): versions, dates, metrics and why a model
# was promoted; not the bucket's keys, the uploads a model came from, or who promoted it.
PUBLIC_POINTER = ("version", "promoted_at", "previous_version")
PRIVATE_REASON = ("by",)
PRIVATE_METADATA = ("lineage",)


def public_view(pointer: dict[str, Any], meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    reason = pointer.get("reason")
    public = {k: pointer[k] for k in PUBLIC_POINTER if k in pointer}
    if isinstance(reason, dict):
        public["reason"] = {k: v for k, v in reason.items() if k not in PRIVATE_REASON}
    return public, {k: v for k, v in meta.items() if k not in PRIVATE_METADATA}


def load_version(s3, bucket: str, pointer: dict) -> Predictor:
    """Fetch and verify the artifact a pointer names. Raises ArtifactIntegrityError on a sha256 mismatch."""
    return Predictor.from_bytes(get_bytes(s3, bucket, pointer["artifact_key"]), pointer["artifact_sha256"])


def load_champion(s3, bucket: str) -> tuple[Predictor, dict]:
    pointer, _ = read_champion(s3, bucket)
    if pointer is None:
        raise NoModelError(NO_MODEL)
    return load_version(s3, bucket, pointer), pointer


def version_metadata(s3, bucket: str, version: str) -> dict:
    return get_json(s3, bucket, version_prefix(version) + "model.json")


@dataclass
class _Loaded:
    predictor: Predictor
    pointer: dict
    etag: str


class ChampionCache:
    """The serving model, re-checked at most every ttl seconds (a conditional GET: 304 when unchanged).

    A new champion whose artifact fails verification is refused: the previous model keeps serving and the bad
    pointer is not retried until it changes again. A check that fails for a transient reason (throttling, 5xx,
    network) keeps serving the loaded model and tries again after a backoff (0.5 s doubling, at most the ttl);
    only with no model loaded does it become StoreUnavailableError (503).
    """

    def __init__(self, s3, bucket: str, ttl: float, clock=time.monotonic):
        self._s3, self._bucket, self._ttl, self._clock = s3, bucket, ttl, clock
        self._current: _Loaded | None = None
        self._refused_etag: str | None = None
        self._next_check = float("-inf")
        self._failures = 0  # consecutive transient failures, for the backoff
        self._lock = threading.Lock()
        self._load_seconds: float | None = None  # time of the last model load, until reported

    def get(self) -> tuple[Predictor, dict]:
        with self._lock:
            if self._current is None or self._clock() >= self._next_check:
                self._refresh()
            if self._current is None:
                raise NoModelError(NO_MODEL)
            return self._current.predictor, self._current.pointer

    def take_load_seconds(self) -> float | None:
        """Seconds the last model load took, once (for a metric), else None."""
        seconds, self._load_seconds = self._load_seconds, None
        return seconds

    def forget_clock(self) -> None:
        """Check the pointer on the next request, whatever the ttl says (e.g. after a SnapStart restore)."""
        self._next_check = float("-inf")

    def rebind(self, s3) -> None:
        """After a SnapStart restore: a new client (the old one's connections died with the snapshot's host), no
        backoff carried over, and the pointer checked on the next request."""
        with self._lock:
            self._s3, self._failures = s3, 0
            self.forget_clock()

    def _refresh(self) -> None:
        try:
            self._check()
        except (ClientError, BotoCoreError) as e:
            if not is_transient(e):
                raise
            self._failures += 1
            backoff = min(0.5 * 2 ** (self._failures - 1), max(self._ttl, 0.5))
            self._next_check = self._clock() + backoff
            serving = self._current.pointer["version"] if self._current else None
            log.warning("champion check failed (%s); serving %s; next check in %.1fs", e, serving, backoff)
            if self._current is None:
                raise StoreUnavailableError(f"the model store is not answering ({error_code_of(e)}): retry") from e
        else:
            self._failures = 0
            self._next_check = self._clock() + self._ttl

    def _check(self) -> None:
        known = self._current.etag if self._current else None
        kwargs = {"IfNoneMatch": known} if known else {}
        try:
            obj = self._s3.get_object(Bucket=self._bucket, Key=CHAMPION_KEY, **kwargs)
        except ClientError as e:
            if is_missing(e) or error_code(e) in ("304", "NotModified"):  # nothing promoted yet, or unchanged
                return
            raise
        etag = obj["ETag"]
        pointer = json.loads(obj["Body"].read())
        if etag == self._refused_etag:
            return
        t0 = time.perf_counter()
        try:
            predictor = load_version(self._s3, self._bucket, pointer)
        except (ArtifactIntegrityError, NotFoundError, ValueError) as e:
            self._refused_etag = etag
            log.error(
                "refusing champion %s: %s; still serving %s",
                pointer.get("version"),
                e,
                self._current.pointer["version"] if self._current else None,
            )
            return
        self._load_seconds = time.perf_counter() - t0
        self._current = _Loaded(predictor, pointer, etag)


def error_code_of(e: Exception) -> str:
    return error_code(e) if isinstance(e, ClientError) else type(e).__name__
