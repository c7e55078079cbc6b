"""The two jobs behind the async functions: retrain on an uploaded CSV, and precompute an inventory's prices.

Retrain, for an upload s3://bucket/incoming/x.csv (once per object version: see retrain_once):
  validate -> rejected (rejected/incoming/x.csv.json, the problems)
  -> plausible against the champion? -> quarantined (rejected/..., the measured error) if its prices are far from
     anything the champion would say: one mislabelled file must not enter the training data
  -> added to the dataset ledger (datasets/ledger.json -> datasets/<sha>.csv): accepted data is kept whatever the
     gate decides, and a sale seen again with new values replaces its earlier version (a correction)
  -> train on the whole ledger -> score challenger and champion on the same reference holdout -> publish the
     challenger (models/<version>/) -> promote only if better -> report (reports/incoming/x.csv.json).

Reference holdout: every model trains without the sales whose house id hashes into bucket 0 of 10, so those sales
are unseen by every model. Both are judged on the holdout sales of the ledger as it was before this upload: the
yardstick follows the market as data accumulates, but an upload cannot rewrite the yardstick it is judged by.
The gate is never poisoned or frozen by a metric: a challenger that cannot be scored is refused, and a champion
that cannot be scored (a broken artifact, a non-finite error) is replaced by a challenger that can, with the
report saying so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from kcprice import layout, registry
from kcprice.config import RetrainSettings
from kcprice.dataset import Merged, Sales, ValidationReport, merge, read_inventory, read_sales
from kcprice.drift import drift_report
from kcprice.errors import ChampionChangedError, IncompatibleArtifactError, KcPriceError, NotFoundError
from kcprice.predictor import Predictor
from kcprice.storage import (
    STORED_COMPS,
    WriteStats,
    batch_put,
    get_bytes,
    is_missing,
    lost_condition,
    price_item,
    put_json,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
    from typing_extensions import TypeIs

log = logging.getLogger(__name__)
HOLDOUT_RULE = "sales whose house id hashes to bucket 0 of 10"


def holdout_mask(ids: np.ndarray) -> np.ndarray:
    """Stable per-house split (a repeat sale of a house always lands on the same side)."""
    h = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return h % np.uint64(10) == 0


class StoredDataError(KcPriceError):
    """Data the system wrote earlier no longer passes validation: nothing is trained on it."""

    def __init__(self, key: str, report: ValidationReport):
        problems = "; ".join(f"{p.code} in {p.column}: {p.message}" for p in report.problems[:3])
        super().__init__(
            f"stored dataset {key} fails validation ({problems}). Repair: restore its previous S3 version, or "
            f"point {layout.LEDGER} at an earlier dataset (see README, Troubleshooting)"
        )
        self.key, self.report = key, report


def load_dataset(s3, bucket: str, key: str) -> Sales:
    """A stored dataset, trusted only after validating it again."""
    sales, report = read_sales(get_bytes(s3, bucket, key))
    if sales is None:
        raise StoredDataError(key, report)
    return sales


def read_ledger(s3, bucket: str) -> tuple[dict | None, str | None]:
    """(ledger, etag): the accepted data, or (None, None) before the first accepted upload."""
    try:
        obj = s3.get_object(Bucket=bucket, Key=layout.LEDGER)
    except ClientError as e:
        if is_missing(e):
            return None, None
        raise
    return json.loads(obj["Body"].read()), obj["ETag"]


def write_ledger(s3, bucket: str, ledger: dict, etag: str | None) -> str:
    """Move the ledger pointer if nobody else did since we read it (If-Match / If-None-Match)."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        return put_json(s3, bucket, layout.LEDGER, ledger, **condition)
    except ClientError as e:
        if lost_condition(e):
            raise ChampionChangedError("the dataset ledger changed while this upload was merged") from e
        raise


@dataclass
class RetrainOutcome:
    status: str  # promoted | refused | accepted | rejected | quarantined | duplicate
    source_key: str
    report_key: str | None = None
    version: str | None = None
    champion_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the function returns and the idempotency record keeps (small: the report has the rest)."""
        drift = self.details.get("drift") or {}
        return {
            "status": self.status,
            "key": self.source_key,
            "report": self.report_key,
            "version": self.version,
            "champion_version": self.champion_version,
            "max_psi": drift.get("max_psi"),
        }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _refuse_upload(
    s3, bucket, key, etag, status: str, why: str, details: dict, version_id: str | None = None
) -> RetrainOutcome:
    doc = {
        "source_key": key,
        "source_etag": etag,
        "source_version": version_id,
        "decision": status,
        "reason": why,
        **details,
        "at": _now(),
    }
    report_key = layout.rejection(key)
    put_json(s3, bucket, report_key, doc)
    log.warning("%s %s: %s", status, key, why)
    return RetrainOutcome(status, key, report_key, details=doc)


def _reject(
    s3, bucket: str, key: str, etag: str, report: ValidationReport | dict, why: str, version_id: str | None = None
) -> RetrainOutcome:
    validation = report.to_dict() if isinstance(report, ValidationReport) else report
    return _refuse_upload(s3, bucket, key, etag, "rejected", why, {"validation": validation}, version_id)


def _finite(x: Any) -> TypeIs[float]:
    return isinstance(x, int | float) and math.isfinite(x)


def _holdout_metrics(model: Predictor, ref: Sales) -> dict[str, Any]:
    from kcprice.training import metrics

    try:
        pred = model.predict_raw(ref.raw)
    except ValueError as e:  # e.g. non-finite features: the model cannot price these sales
        return {"mape": None, "n": len(ref), "error": str(e)}
    if not np.isfinite(pred).all():
        return {"mape": None, "n": len(ref), "error": f"{int((~np.isfinite(pred)).sum())} non-finite predictions"}
    out: dict[str, Any] = metrics(ref.price, pred)
    if model.ranges is not None:  # the ranges' coverage on the same held-out sales, as served
        from kcprice.ranges import COVERAGES, coverage_report, key

        values = {key(c): model.value_raw(ref.raw, c) for c in COVERAGES}
        bounds = {k: (v["low"], v["high"]) for k, v in values.items()}
        out["ranges"] = coverage_report(ref.price, pred, bounds)
    return out


def plausibility(champion: Predictor, reference: Sales, upload: Sales, settings: RetrainSettings) -> dict:
    """How far the upload's prices are from what the champion says, against how far its holdout sales are.
    Shuffled or mis-scaled prices are several times further off than any real market move (measured: the
    champion's median error is ~8% on its holdout, ~10% on a later year of sales, ~45% on shuffled prices)."""

    def median_ape(s: Sales) -> float:
        return float(np.median(np.abs(champion.predict_raw(s.raw) - s.price) / s.price))

    usual = median_ape(reference)
    seen = median_ape(upload)
    if not (math.isfinite(usual) and math.isfinite(seen)):  # an unscorable champion cannot judge data either
        return {"upload_median_ape": seen, "holdout_median_ape": usual, "limit": None, "plausible": True}
    limit = max(settings.plausibility_factor * usual, settings.plausibility_floor)
    return {"upload_median_ape": seen, "holdout_median_ape": usual, "limit": limit, "plausible": seen <= limit}


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

    def replayed(response: Any, idempotent_data: DataRecord) -> Any:  # Powertools' hook protocol, names included
        return {**response, "status": "duplicate", "first_status": response.get("status")}

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
        out = retrain(
            s3, upload["bucket"], upload["key"], upload["etag"], settings, version_id=upload.get("version_id")
        ).summary()
        # Inside the idempotent run: counted once per upload, and a replayed duplicate carries the count it had.
        out["not_promoted_in_a_row"] = count_not_promoted(ddb, settings.idempotency_table, out["status"])
        return out

    run.config = config
    return run


# Uploads in a row that ended without a promotion: one counter item in retrain's own table (beside Powertools'
# records, whose ids are "upload#<hash>"; this one never expires). The RefusalsInARow alarm watches the metric.
STREAK_ID = "streak#not-promoted"
NOT_PROMOTED = ("rejected", "refused", "quarantined")


def count_not_promoted(ddb, table: str, status: str) -> int | None:
    """Promoted: back to 0. Rejected, refused, quarantined: one more. Anything else leaves the count alone (None).
    A failure to count is logged, never the upload's failure (Lambda would retry the whole training for it)."""
    if status != "promoted" and status not in NOT_PROMOTED:
        return None
    update = "SET n = :v" if status == "promoted" else "ADD n :v"
    try:
        out = ddb.update_item(
            TableName=table,
            Key={"id": {"S": STREAK_ID}},
            UpdateExpression=update,
            ExpressionAttributeValues={":v": {"N": "0" if status == "promoted" else "1"}},
            ReturnValues="ALL_NEW",  # the item as written (UPDATED_NEW may leave out a value SET to what it was)
        )
        return int(out["Attributes"]["n"]["N"])
    except (ClientError, BotoCoreError, KeyError, ValueError):
        log.exception("could not count uploads without a promotion")
        return None


def retrain(
    s3,
    bucket: str,
    key: str,
    etag: str,
    settings: RetrainSettings,
    accept_implausible: bool = False,
    version_id: str | None = None,
) -> RetrainOutcome:
    """Every report it writes names the upload's object version (`source_version`): a later upload to the same key
    replaces the report, and a reader waiting for its own upload's outcome can tell which one it has."""
    from kcprice.training import train

    t0 = time.perf_counter()
    if not key.lower().endswith(".csv"):
        problem = {"code": "not_csv", "message": "only .csv files under incoming/ are read", "column": None}
        return _reject(s3, bucket, key, etag, {"ok": False, "problems": [problem]}, "not a .csv file", version_id)
    upload, report = read_sales(get_bytes(s3, bucket, key), min_rows=settings.min_upload_rows)
    if upload is None:
        return _reject(s3, bucket, key, etag, report, "the file failed validation", version_id)
    log.info("validated %s: %d sales", key, len(upload))

    pointer, champion_etag = registry.read_champion(s3, bucket)
    champion, incompatible = None, None
    if pointer:
        try:
            champion = registry.load_version(s3, bucket, pointer)
        except (IncompatibleArtifactError, ValueError) as e:  # no code can serve it: nothing to judge against
            incompatible = str(e)
            log.warning("champion %s cannot be loaded: %s", pointer["version"], incompatible)
    ledger, ledger_etag = read_ledger(s3, bucket)
    base_key = ledger["dataset_key"] if ledger else None
    if base_key is None and pointer:  # a deployment from before the ledger: the champion's data is the start
        base_key = registry.version_metadata(s3, bucket, pointer["version"])["lineage"]["dataset_key"]
    base = load_dataset(s3, bucket, base_key) if base_key else None
    reference = base.take(holdout_mask(base.ids)) if base is not None else None

    check = None
    if champion is not None and reference is not None and len(reference) and not accept_implausible:
        check = plausibility(champion, reference, upload, settings)
        if not check["plausible"]:
            why = (
                f"prices far from the champion's: median error {check['upload_median_ape']:.1%} against "
                f"{check['holdout_median_ape']:.1%} on its holdout (limit {check['limit']:.1%})"
            )
            return _refuse_upload(
                s3,
                bucket,
                key,
                etag,
                "quarantined",
                why,
                {"plausibility": check, "validation": report.to_dict()},
                version_id,
            )

    if base is None:
        merged = Merged(Sales(upload.ids, upload.raw, upload.price, upload.sha256), len(upload), 0, 0)
        merged.sales.sha256 = _sha(merged.sales)
    else:
        merged = merge(base, upload)
    entry = {
        "key": key,
        "etag": etag,
        "sha256": upload.sha256,
        "rows": len(upload),
        "new": merged.new,
        "corrected": merged.replaced,
        "unchanged": merged.unchanged,
        "at": _now(),
    }
    unchanged = base is not None and merged.new == 0 and merged.replaced == 0
    # What the last model (promoted or refused) was trained on. Before the ledger existed: the champion's data.
    trained_sha = ledger.get("trained_sha256") if ledger else (base.sha256 if base is not None else None)
    if unchanged and base is not None and trained_sha == base.sha256:
        doc = {
            "source_key": key,
            "source_etag": etag,
            "source_version": version_id,
            "decision": "duplicate",
            "at": _now(),
            "reason": f"all {len(upload):,} sales are already in the dataset ledger, unchanged, and a model was "
            "trained on it: nothing to learn",
            "ledger": {"dataset_key": base_key},
            "validation": report.to_dict(),
        }
        report_key = layout.upload_report(key)
        put_json(s3, bucket, report_key, doc)
        return RetrainOutcome("duplicate", key, report_key, None, pointer["version"] if pointer else None, doc)

    # Unchanged but never trained on: an earlier run stored the data and died before its model (it is retried).
    pool = base if unchanged and base is not None else merged.sales
    dataset_key = layout.dataset(pool.sha256)
    uploads = (ledger or {}).get("uploads", [])
    if not any(u["key"] == key and u["etag"] == etag for u in uploads):
        uploads = [*uploads, entry]
    if not unchanged:
        s3.put_object(Bucket=bucket, Key=dataset_key, Body=pool.to_csv(), ContentType="text/csv")
    ledger = {
        **(ledger or {}),
        "dataset_key": dataset_key,
        "sha256": pool.sha256,
        "rows": len(pool),
        "uploads": uploads,
        "updated_at": _now(),
    }
    ledger_etag = write_ledger(s3, bucket, ledger, ledger_etag)
    log.info("ledger: %d sales (%d new, %d corrected) in %s", len(pool), merged.new, merged.replaced, dataset_key)

    meta = registry.version_metadata(s3, bucket, pointer["version"]) if champion is not None and pointer else None
    upload_drift = drift_report(meta["reference_distributions"], upload.raw, settings.psi_threshold) if meta else None
    if upload_drift:
        _warn_drift(f"upload {key}", upload_drift)
    hold = holdout_mask(pool.ids)
    if reference is None or not len(reference):
        reference = pool.take(hold)
    report_key = layout.upload_report(key)
    decision: dict[str, Any] = {
        "source_key": key,
        "source_etag": etag,
        "source_version": version_id,
        "validation": report.to_dict(),
        "plausibility": check,
        "ledger": {"dataset_key": dataset_key, "rows": len(pool), **{k: entry[k] for k in ("new", "corrected")}},
        "drift": upload_drift,
        "champion_version": pointer["version"] if pointer else None,
    }
    n_train = int((~hold).sum())
    if n_train < settings.min_training_rows:
        decision.update(
            decision="accepted",
            at=_now(),
            reason=f"the data is kept; {n_train} training rows after "
            f"the holdout, at least {settings.min_training_rows} needed to train",
        )
        put_json(s3, bucket, report_key, decision)
        return RetrainOutcome("accepted", key, report_key, None, decision["champion_version"], decision)

    lineage = {
        "parent_version": pointer["version"] if pointer else None,
        "source_key": key,
        "source_etag": etag,
        "upload_sha256": upload.sha256,
        "upload_rows": len(upload),
        "dataset_key": dataset_key,
        "dataset_sha256": pool.sha256,
        "dataset_rows": len(pool),
        "uploads": [u["key"] for u in uploads],
        "holdout_rule": HOLDOUT_RULE,
        "holdout_rows": len(reference),
    }
    # One fit per upload. The random and temporal splits judge the model's design, not an upload: `kcprice train`
    # measures them; here the gate's holdout is what decides (and two fits fewer: 3x faster).
    result = train(pool.take(~hold), evaluate_splits=False, log=log.info, extra_meta={"lineage": lineage})
    challenger_m = _holdout_metrics(result.predictor, reference)
    champion_m = _holdout_metrics(champion, reference) if champion is not None else None
    better, why = _gate(challenger_m, champion_m, pointer, incompatible, settings.min_improvement)
    gate = {
        "metric": "holdout MAPE (%)",
        "challenger": challenger_m,
        "champion": champion_m,
        "min_improvement": settings.min_improvement,
        "first_model": pointer is None,
        "champion_incompatible": incompatible,
        "why": why,
    }
    result.meta["holdout"] = gate
    decision.update(
        challenger_version=result.meta["version"],
        gate=gate,
        lineage=lineage,
        decision="promoted" if better else "refused",
        seconds=round(time.perf_counter() - t0, 2),
        at=_now(),
    )
    # A refused challenger that could be scored is published too, not champion: an operator may judge it better
    # than the gate did (a tie, an outdated holdout) and promote it by hand. One that could not be scored is not.
    result.meta["gate_decision"] = decision["decision"]
    decision["published"] = _publishable(better, challenger_m)
    if decision["published"]:
        registry.publish_version(
            s3, bucket, result.artifact, result.meta, extra=model_card_files(result, reference, upload_drift)
        )
    if not better:
        put_json(s3, bucket, report_key, decision)
        _mark_trained(s3, bucket, ledger, ledger_etag, result.meta["version"])  # only once the decision is stored
        log.info("refused %s: %s", result.meta["version"], why)
        return RetrainOutcome(
            "refused", key, report_key, result.meta["version"], decision["champion_version"], decision
        )
    registry.promote(
        s3,
        bucket,
        result.meta,
        champion_etag,
        {"holdout_mape": challenger_m["mape"], "why": why, "previous_holdout_mape": (champion_m or {}).get("mape")},
    )
    put_json(s3, bucket, report_key, decision)
    _mark_trained(s3, bucket, ledger, ledger_etag, result.meta["version"])
    log.info("promoted %s: %s", result.meta["version"], why)
    return RetrainOutcome("promoted", key, report_key, result.meta["version"], result.meta["version"], decision)


def _mark_trained(s3, bucket: str, ledger: dict, etag: str, version: str) -> None:
    """Record in the ledger that a model was trained on its current data (so the same sales again are a duplicate,
    and a run that died between storing the data and training leaves it untrained: its retry trains)."""
    try:
        write_ledger(
            s3,
            bucket,
            {**ledger, "trained_sha256": ledger["sha256"], "trained_version": version, "trained_at": _now()},
            etag,
        )
    except ChampionChangedError:  # another upload moved the ledger meanwhile: it will be trained on by that run
        log.warning("the ledger moved while %s was trained; not marking it trained", version)


def _sha(sales: Sales) -> str:
    import hashlib

    return hashlib.sha256(sales.to_csv()).hexdigest()


def _gate(
    challenger: dict, champion: dict | None, pointer: dict | None, incompatible: str | None, margin: float
) -> tuple[bool, str]:
    """Promote? A metric that is missing or not finite is never "better", and never blocks the next model."""
    mine = challenger.get("mape")
    if not _finite(mine):
        return False, f"the challenger could not be scored on the holdout ({challenger.get('error', mine)})"
    if pointer is None:
        return True, "the first model"
    if champion is None:
        return True, f"the champion cannot be loaded ({incompatible}): replaced without a comparison"
    theirs = champion.get("mape")
    if not _finite(theirs):
        return True, f"the champion could not be scored on the holdout ({champion.get('error', theirs)})"
    if mine < theirs - margin:
        return True, f"holdout MAPE {mine:.3f}% against the champion's {theirs:.3f}% (margin {margin})"
    return False, f"holdout MAPE {mine:.3f}% is not below the champion's {theirs:.3f}% by {margin}"


def _publishable(better: bool, challenger: dict) -> bool:
    """Published in the registry: a challenger the gate promotes, or one it refused after scoring it (an operator
    may promote it by hand); never one that could not be scored (a NaN MAPE: it would price some house NaN)."""
    return better or _finite(challenger.get("mape"))


def _warn_drift(what: str, report: dict) -> None:
    if report["drifted"]:
        log.warning(
            "drift in %s: PSI > %s for %s (max %.3f)", what, report["threshold"], report["drifted"], report["max_psi"]
        )


def model_card_files(result, reference: Sales, upload_drift: dict | None = None) -> dict[str, bytes]:
    """Extra files published next to the artifact (the model card lives in kcprice.card, training side only)."""
    try:
        from kcprice.card import render
    except ImportError:  # matplotlib absent: the model still ships, without its card
        return {}
    return render(result, reference, upload_drift)


# --- precompute ---------------------------------------------------------------------------------------------------
@dataclass
class PrecomputeOutcome:
    status: str  # written | no_inventory | no_model | rejected_inventory | superseded
    model_version: str | None = None
    items: int = 0
    stats: WriteStats | None = None
    seconds: float = 0.0
    drift: dict | None = None
    rounds: int = 0  # how many times the table was written (more than once if the champion moved meanwhile)
    skipped: int = 0  # inventory houses left out for a problem (reported in rejected/<inventory key>.json)


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
    if report.problems:  # houses left out (or the whole file): the report says which and why; the rest is priced
        doc = {
            "inventory_key": inventory_key,
            "model_version": pointer["version"],
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "priced": 0 if houses is None else len(houses),
            **report.to_dict(),
        }
        put_json(s3, bucket, layout.rejection(inventory_key), doc)
        log.warning(
            "inventory %s: %d of %d houses skipped (%s)",
            inventory_key,
            len(report.skipped) or report.rows,
            report.rows,
            ", ".join(sorted({p.code for p in report.problems})),
        )
    if houses is None:
        return PrecomputeOutcome("rejected_inventory", pointer["version"], skipped=report.rows)
    meta = registry.version_metadata(s3, bucket, pointer["version"])
    inventory_drift = drift_report(meta["reference_distributions"], houses.raw, psi_threshold)
    _warn_drift(f"inventory {inventory_key}", inventory_drift)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    put_json(
        s3,
        bucket,
        layout.drift_report(pointer["version"], stamp),
        {"inventory_key": inventory_key, "model_version": pointer["version"], **inventory_drift},
    )
    raw = houses.raw.copy()
    day = raw[:, -1]
    day[np.isnan(day)] = predictor.default_day
    values = predictor.value_raw(raw)  # the default (80%) range, as GET /houses/{id}/price answers it
    ids = houses.ids.tolist()
    comps = predictor.comparable_sales_many(raw, STORED_COMPS, [str(i) for i in ids])
    computed_at = int(now if now is not None else time.time())
    expires_at = computed_at + ttl_days * 86_400
    version = pointer["version"]
    items = (
        price_item(str(i), p, version, computed_at, expires_at, lo, hi, fsd, cs)
        for i, p, lo, hi, fsd, cs in zip(
            ids,
            values["price"].tolist(),
            values["low"].tolist(),
            values["high"].tolist(),
            values["fsd"].tolist(),
            comps,
            strict=True,
        )
    )
    total = len(houses)

    def progress(s: WriteStats) -> None:
        if s.batches % 100 == 0 or s.written == total:
            log.info("precompute: %d/%d items written (%d retried)", s.written, total, s.retried_items)

    stats = batch_put(ddb, table, items, progress=progress)
    return PrecomputeOutcome("written", version, total, stats, 0.0, inventory_drift, skipped=len(report.skipped))
