"""The data bucket's key layout: every key the system uses, who writes it and who reads it. Code builds keys only
here; tests/unit/test_template.py checks that each function's IAM policy allows exactly the writes listed.

    key                                   written by                     read by
    incoming/<name>.csv                   people, the ingest function    RetrainFunction (S3 trigger)
    datasets/<sha256>.csv                 RetrainFunction                RetrainFunction
    datasets/ledger.json                  RetrainFunction (conditional)  RetrainFunction, operators
    models/<version>/model.npz|.json|...  RetrainFunction                PredictFunction, PrecomputeFunction
    models/champion.json                  RetrainFunction, operators     every function (precompute: S3 trigger)
                                          (`kcprice models promote`/`rollback`; always conditional)
    reports/<upload key>.json             RetrainFunction                operators, kcprice
    reports/drift/<version>/<time>.json   PrecomputeFunction             operators
    rejected/<upload key>.json            RetrainFunction                operators, kcprice
    rejected/<inventory key>.json         PrecomputeFunction             operators
    inventory/houses.csv                  people, the ingest function    PrecomputeFunction
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

# function -> prefixes it writes (the template grants PutObject on exactly these)
WRITERS: dict[str, tuple[str, ...]] = {
    "RetrainFunction": (DATASETS, MODELS, REPORTS, REJECTED),
    "PrecomputeFunction": (REPORTS + "drift/", REJECTED + INVENTORY),
    "PredictFunction": (),
    "PreTrafficHookFunction": (),  # it calls the new predict version, never the bucket
}
# function -> prefixes it reads (GetObject, and ListBucket for those prefixes so a missing key is a 404)
READERS: dict[str, tuple[str, ...]] = {
    "RetrainFunction": (INCOMING, DATASETS, MODELS),
    "PrecomputeFunction": (MODELS, INVENTORY),
    "PredictFunction": (MODELS,),
    "PreTrafficHookFunction": (),
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
