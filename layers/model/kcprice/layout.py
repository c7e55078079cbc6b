"""The data bucket's key layout: every key the system uses, who writes it and who reads it. Code builds keys only
here; tests/unit/test_template.py checks that each function's IAM policy allows exactly the writes listed.

    key                                   written by                     read by
    incoming/<name>.csv                   people                         RetrainFunction (S3 trigger)
    incoming/marketplace/<from>_<to>.csv  IngestFunction                 RetrainFunction (S3 trigger), IngestFunction
    reports/ingest/<from>_<to>.json       IngestFunction                 operators (rows left out, database keys)
    datasets/<sha256>.csv                 RetrainFunction                RetrainFunction
    datasets/ledger.json                  RetrainFunction (conditional)  RetrainFunction, operators
    models/<version>/model.npz|.json|...  RetrainFunction                PredictFunction, PrecomputeFunction
    models/champion.json                  RetrainFunction, operators     every function (precompute: S3 trigger)
                                          (`kcprice models promote`/`rollback`; always conditional)
    reports/<upload key>.json             RetrainFunction                operators, kcprice
    reports/drift/<version>/<time>.json   PrecomputeFunction             operators
    rejected/<upload key>.json            RetrainFunction                operators, kcprice
    rejected/<inventory key>.json         PrecomputeFunction             operators
    inventory/houses.csv                  people, IngestFunction         PrecomputeFunction (S3 trigger), IngestFunction
"""

from __future__ import annotations

INCOMING = "incoming/"
DATASETS = "datasets/"
MODELS = "models/"
REPORTS = "reports/"
REJECTED = "rejected/"
INVENTORY = "inventory/"
CHAMPION = MODELS + "champion.json"
LEDGER = DATASETS + "ledger.json"
DEFAULT_INVENTORY = INVENTORY + "houses.csv"
MARKETPLACE = INCOMING + "marketplace/"
INGEST_REPORTS = REPORTS + "ingest/"

# function -> prefixes it writes (the template grants PutObject on exactly these)
WRITERS: dict[str, tuple[str, ...]] = {
    "RetrainFunction": (DATASETS, MODELS, REPORTS, REJECTED),
    "PrecomputeFunction": (REPORTS + "drift/", REJECTED + INVENTORY),
    "PredictFunction": (),
    "PreTrafficHookFunction": (),  # it calls the new predict version, never the bucket
    "IngestFunction": (MARKETPLACE, INGEST_REPORTS, DEFAULT_INVENTORY),
}
# function -> prefixes it reads (GetObject, and ListBucket for those prefixes so a missing key is a 404)
READERS: dict[str, tuple[str, ...]] = {
    "RetrainFunction": (INCOMING, DATASETS, MODELS),
    "PrecomputeFunction": (MODELS, INVENTORY),
    "PredictFunction": (MODELS,),
    "PreTrafficHookFunction": (),
    # its own exports (is the claimed window's file there?), retraining's verdict on the last one, the inventory
    "IngestFunction": (MARKETPLACE, REPORTS + MARKETPLACE, REJECTED + MARKETPLACE, DEFAULT_INVENTORY),
}


def dataset(sha256: str) -> str:
    return f"{DATASETS}{sha256}.csv"


def version(v: str) -> str:
    return f"{MODELS}{v}/"


def upload_report(upload_key: str) -> str:
    return f"{REPORTS}{upload_key}.json"


def rejection(key: str) -> str:
    """Why an upload (or the houses of an inventory) was refused: rejected/<the key>.json."""
    return f"{REJECTED}{key}.json"


def drift_report(model_version: str, stamp: str) -> str:
    return f"{REPORTS}drift/{model_version}/{stamp}.json"


def marketplace_export(after: str, upto: str) -> str:
    return f"{MARKETPLACE}{after}_{upto}.csv"


def marketplace_report(export_key: str) -> str:
    """The rows an export left out (validation), with their database keys."""
    return f"{INGEST_REPORTS}{export_key.removeprefix(MARKETPLACE).removesuffix('.csv')}.json"
