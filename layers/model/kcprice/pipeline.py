"""The two jobs behind the async functions: retrain on an uploaded CSV, and precompute an inventory's prices.

Retrain, for an upload s3://bucket/incoming/x.csv (once per object version: see retrain_once):
  validate -> (reject with rejected/incoming/x.csv.json) | merge into the champion's dataset -> train ->
  score challenger and champion on the same reference holdout -> promote only if better -> report.

Reference holdout: every model trains without the sales whose house id hashes into bucket 0 of 10, so those
sales are unseen by champion and challenger alike. The challenger is judged on the champion's own holdout sales,
which were accepted earlier: a poisoned upload cannot rewrite the yardstick it is judged by.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kcprice import registry
from kcprice.config import RetrainSettings
from kcprice.dataset import Sales, ValidationReport, merge, read_inventory, read_sales
from kcprice.drift import drift_report
from kcprice.errors import IncompatibleArtifactError, KcPriceError, NotFoundError
from kcprice.predictor import Predictor
from kcprice.storage import WriteStats, batch_put, get_bytes, price_item, put_json

log = logging.getLogger(__name__)
HOLDOUT_RULE = "sales whose house id hashes to bucket 0 of 10"


def holdout_mask(ids: np.ndarray) -> np.ndarray:
    """Stable per-house split (a repeat sale of a house always lands on the same side)."""
    h = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return h % np.uint64(10) == 0


def _dataset_key(sha: str) -> str:
    return f"datasets/{sha}.csv"


# --- retrain ------------------------------------------------------------------------------------------------------
@dataclass
class RetrainOutcome:
    status: str  # promoted | refused | rejected
    source_key: str
    report_key: str | None = None
    version: str | None = None
    champion_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the function returns and the idempotency record keeps (small: the report has the rest)."""
        drift = self.details.get("drift") or {}
        return {"status": self.status, "key": self.source_key, "report": self.report_key, "version": self.version,
                "champion_version": self.champion_version, "max_psi": drift.get("max_psi")}  # fmt: skip


def _reject(s3, bucket: str, key: str, etag: str, report: ValidationReport | dict, why: str) -> RetrainOutcome:
    doc = {
        "source_key": key,
        "source_etag": etag,
        "decision": "rejected",
        "reason": why,
        "validation": report.to_dict() if isinstance(report, ValidationReport) else report,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    report_key = f"rejected/{key}.json"
    put_json(s3, bucket, report_key, doc)
    log.warning("rejected %s: %s", key, why)
    return RetrainOutcome("rejected", key, report_key, details=doc)


def _holdout_metrics(model: Predictor, ref: Sales) -> dict[str, float]:
    from kcprice.training import metrics

    return metrics(ref.price, model.predict_raw(ref.raw))


def retrain_once(s3, ddb, settings: RetrainSettings):
    """retrain(), at most once per uploaded object version, with Powertools Idempotency (a DynamoDB record).

    S3 may deliver an event twice and Lambda retries a failed one. Semantics, as Powertools implements them:
    - the first delivery writes an INPROGRESS record whose expiry is its invocation's deadline (register the Lambda
      context on `.config` first), runs, then stores its summary (COMPLETED);
    - a delivery that finds a COMPLETED record returns that summary marked "duplicate" (the work is done);
    - a delivery that finds an unexpired INPROGRESS record raises IdempotencyAlreadyInProgressError: an error, so
      Lambda retries it later, and after the last retry the event goes to the failure queue. A run that crashed
      without reaching an `except` (killed, out of memory, timed out) therefore never reads as a success;
    - a run that raises deletes its record, so Lambda's retry runs it again.
    """
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    def replayed(summary: dict, record) -> dict:
        return {**summary, "status": "duplicate", "first_status": summary.get("status")}

    config = IdempotencyConfig(
        event_key_jmespath="[bucket, key, version_id || etag]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.idempotency_days * 86_400,
        response_hook=replayed,
    )
    store = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=ddb)

    # A fixed key prefix: the default one includes the Lambda function's name, which differs between deployments.
    @idempotent_function(data_keyword_argument="upload", persistence_store=store, config=config, key_prefix="upload")
    def run(upload: dict) -> dict:
        return retrain(s3, upload["bucket"], upload["key"], upload["etag"], settings).summary()

    run.config = config  # type: ignore[attr-defined]
    return run


def retrain(s3, bucket: str, key: str, etag: str, settings: RetrainSettings) -> RetrainOutcome:
    from kcprice.training import train

    t0 = time.perf_counter()
    upload, report = read_sales(get_bytes(s3, bucket, key), min_rows=settings.min_upload_rows)
    if upload is None:
        return _reject(s3, bucket, key, etag, report, "the file failed validation")
    log.info("validated %s: %d sales", key, len(upload))

    pointer, champion_etag = registry.read_champion(s3, bucket)
    champion, base, upload_drift, incompatible = None, None, None, None
    if pointer:
        try:
            champion = registry.load_version(s3, bucket, pointer)
        except IncompatibleArtifactError as e:  # no code can serve it any more: nothing to judge against
            incompatible = str(e)
            log.warning("champion %s is not comparable: %s", pointer["version"], incompatible)
        meta = registry.version_metadata(s3, bucket, pointer["version"])
        base, _ = read_sales(get_bytes(s3, bucket, meta["lineage"]["dataset_key"]))
        pool = merge(base, upload)
        upload_drift = drift_report(meta["reference_distributions"], upload.raw, settings.psi_threshold)
        _warn_drift(f"upload {key}", upload_drift)
    else:
        pool = Sales(upload.ids, upload.raw, upload.price, hashlib.sha256(upload.to_csv()).hexdigest())
    hold = holdout_mask(pool.ids)
    if int((~hold).sum()) < settings.min_training_rows:
        why = f"{int((~hold).sum())} training rows after the holdout; at least {settings.min_training_rows} needed"
        return _reject(s3, bucket, key, etag, {"ok": False, "rows": len(upload)}, why)
    reference = base.take(holdout_mask(base.ids)) if base is not None else pool.take(hold)

    lineage = {
        "parent_version": pointer["version"] if pointer else None,
        "source_key": key,
        "source_etag": etag,
        "upload_sha256": upload.sha256,
        "upload_rows": len(upload),
        "dataset_key": _dataset_key(pool.sha256),
        "dataset_sha256": pool.sha256,
        "dataset_rows": len(pool),
        "holdout_rule": HOLDOUT_RULE,
        "holdout_rows": len(reference),
    }
    # No default-HGB yardstick per upload: it compares model designs (`kcprice train` prints it), not uploads, and
    # would cost two more fits (~0.5 s of a 10 s budget).
    result = train(pool.take(~hold), with_baseline=False, log=log.info, extra_meta={"lineage": lineage})
    challenger_m = _holdout_metrics(result.predictor, reference)
    champion_m = _holdout_metrics(champion, reference) if champion else None
    better = champion_m is None or challenger_m["mape"] < champion_m["mape"] - settings.min_improvement
    gate = {
        "metric": "holdout MAPE (%)",
        "challenger": challenger_m,
        "champion": champion_m,
        "min_improvement": settings.min_improvement,
        "first_model": pointer is None,
        "champion_incompatible": incompatible,
    }
    result.meta["holdout"] = gate
    decision = {
        "source_key": key,
        "source_etag": etag,
        "validation": report.to_dict(),
        "challenger_version": result.meta["version"],
        "champion_version": pointer["version"] if pointer else None,
        "gate": gate,
        "split_metrics": result.meta["metrics"],
        "lineage": lineage,
        "drift": upload_drift,
        "decision": "promoted" if better else "refused",
        "seconds": round(time.perf_counter() - t0, 2),
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    report_key = f"reports/{key}.json"
    if not better:
        put_json(s3, bucket, report_key, decision)
        log.info("refused %s: holdout MAPE %.3f%% vs champion %.3f%%", result.meta["version"],
                 challenger_m["mape"], champion_m["mape"])  # fmt: skip
        return RetrainOutcome("refused", key, report_key, result.meta["version"], pointer["version"], decision)

    s3.put_object(Bucket=bucket, Key=lineage["dataset_key"], Body=pool.to_csv(), ContentType="text/csv")
    registry.publish_version(
        s3, bucket, result.artifact, result.meta, extra=model_card_files(result, reference, upload_drift)
    )
    registry.promote(s3, bucket, result.meta, champion_etag, {"holdout_mape": challenger_m["mape"],
                     "previous_holdout_mape": champion_m["mape"] if champion_m else None})  # fmt: skip
    put_json(s3, bucket, report_key, decision)
    log.info("promoted %s (holdout MAPE %.3f%%)", result.meta["version"], challenger_m["mape"])
    return RetrainOutcome("promoted", key, report_key, result.meta["version"], result.meta["version"], decision)


def _warn_drift(what: str, report: dict) -> None:
    if report["drifted"]:
        log.warning("drift in %s: PSI > %s for %s (max %.3f)", what, report["threshold"], report["drifted"],
                    report["max_psi"])  # fmt: skip


def model_card_files(result, reference: Sales, upload_drift: dict | None = None) -> dict[str, bytes]:
    """Extra files published next to the artifact (the model card lives in kcprice.card, training side only)."""
    try:
        from kcprice.card import render
    except ImportError:  # matplotlib absent: the model still ships, without its card
        return {}
    return render(result, reference, upload_drift)


# --- precompute ---------------------------------------------------------------------------------------------------
class InvalidInventoryError(KcPriceError):
    def __init__(self, report: ValidationReport):
        super().__init__(f"inventory failed validation: {[p.code for p in report.problems]}")
        self.report = report


@dataclass
class PrecomputeOutcome:
    status: str  # written | no_inventory | no_model | superseded
    model_version: str | None = None
    items: int = 0
    stats: WriteStats | None = None
    seconds: float = 0.0
    drift: dict | None = None
    rounds: int = 0  # how many times the table was written (more than once if the champion moved meanwhile)


def precompute(
    s3,
    ddb,
    bucket: str,
    table: str,
    inventory_key: str,
    ttl_days: int,
    psi_threshold: float = 0.2,
    now: float | None = None,
    max_rounds: int = 3,
) -> PrecomputeOutcome:
    """Price the inventory with the champion. After writing, the pointer is read again: if a newer champion was
    promoted meanwhile, its prices are written over (BatchWriteItem has no conditions, so an older run finishing last
    would otherwise leave older prices). With reserved concurrency 1 runs never overlap; the re-check covers a
    promotion during a run, and two runs overlapping anyway both end by writing the newest champion's prices."""
    t0 = time.perf_counter()
    out = PrecomputeOutcome("no_model")
    for round_ in range(1, max_rounds + 1):
        pointer, etag = registry.read_champion(s3, bucket)
        if pointer is None:
            log.warning("no champion yet: nothing to precompute")
            return out
        out = _precompute_with(s3, ddb, bucket, table, inventory_key, ttl_days, psi_threshold, now, pointer)
        out.rounds = round_
        if out.status != "written" or registry.read_champion(s3, bucket)[1] == etag:
            out.seconds = time.perf_counter() - t0
            return out
        log.warning(
            "the champion changed while %s was being written: writing again with the new one", pointer["version"]
        )
    out.status, out.seconds = "superseded", time.perf_counter() - t0
    return out


def _precompute_with(s3, ddb, bucket, table, inventory_key, ttl_days, psi_threshold, now, pointer) -> PrecomputeOutcome:
    predictor = registry.load_version(s3, bucket, pointer)
    try:
        data = get_bytes(s3, bucket, inventory_key)
    except NotFoundError:
        log.warning("no inventory at s3://%s/%s: nothing to precompute", bucket, inventory_key)
        return PrecomputeOutcome("no_inventory", pointer["version"])
    houses, report = read_inventory(data)
    if houses is None:
        put_json(s3, bucket, f"rejected/{inventory_key}.json", report.to_dict())
        raise InvalidInventoryError(report)
    meta = registry.version_metadata(s3, bucket, pointer["version"])
    inventory_drift = drift_report(meta["reference_distributions"], houses.raw, psi_threshold)
    _warn_drift(f"inventory {inventory_key}", inventory_drift)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    put_json(s3, bucket, f"reports/drift/{pointer['version']}/{stamp}.json",
             {"inventory_key": inventory_key, "model_version": pointer["version"], **inventory_drift})  # fmt: skip
    raw = houses.raw.copy()
    day = raw[:, -1]
    day[np.isnan(day)] = predictor.default_day
    prices = predictor.predict_raw(raw)
    computed_at = int(now if now is not None else time.time())
    expires_at = computed_at + ttl_days * 86_400
    version = pointer["version"]
    items = (
        price_item(str(i), p, version, computed_at, expires_at)
        for i, p in zip(houses.ids.tolist(), prices.tolist(), strict=True)
    )
    total = len(houses)

    def progress(s: WriteStats) -> None:
        if s.batches % 100 == 0 or s.written == total:
            log.info("precompute: %d/%d items written (%d retried)", s.written, total, s.retried_items)

    stats = batch_put(ddb, table, items, progress=progress)
    return PrecomputeOutcome("written", version, total, stats, 0.0, inventory_drift)
