"""Operations on a deployed stack (or the local one): what `kcprice` does for operators. Workstation side only:
the functions never import this module."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kcprice import layout
from kcprice.errors import NotFoundError


def stack_outputs(cfn, stack: str) -> dict[str, str]:
    """The Outputs of a CloudFormation stack (BucketName, TableName, ApiUrl, FailureQueueUrl...)."""
    (desc,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}


def empty_bucket(s3, bucket: str, say: Callable[[str], None] = print) -> int:
    """Delete every object version and delete marker of a (versioned) bucket, 1,000 at a time; returns how many.
    A versioned bucket keeps every overwritten object: deleting the current keys alone would leave it non-empty."""
    deleted = 0
    while True:  # always the first page: listing on from a marker whose objects were just deleted skips some
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=1000)
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for kind in ("Versions", "DeleteMarkers")
            for v in page.get(kind, [])
        ][:1000]
        if not batch:
            return deleted
        out = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if out.get("Errors"):
            raise RuntimeError(f"could not delete {len(out['Errors'])} object versions: {out['Errors'][:3]}")
        deleted += len(batch)
        say(f"deleted {deleted:,} object versions from s3://{bucket}")


def delete_bucket(s3, bucket: str, say: Callable[[str], None] = print) -> None:
    empty_bucket(s3, bucket, say)
    s3.delete_bucket(Bucket=bucket)
    say(f"deleted bucket {bucket}")


# --- the model registry, by hand -------------------------------------------------------------------------------
def list_versions(s3, bucket: str) -> list[dict[str, Any]]:
    """Every complete version (one with its model.json), oldest first, the champion marked."""
    from kcprice import registry

    pointer, _ = registry.read_champion(s3, bucket)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.MODELS, Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            version = prefix["Prefix"][len(layout.MODELS) :].rstrip("/")
            try:
                meta = registry.version_metadata(s3, bucket, version)
            except NotFoundError:  # being written, or abandoned mid-write: not a version
                continue
            lineage = meta.get("lineage") or {}
            out.append(
                {
                    "version": version,
                    "created_at": meta.get("created_at"),
                    "champion": bool(pointer and pointer["version"] == version),
                    "rows": lineage.get("dataset_rows") or meta.get("n_train"),
                    "source_key": lineage.get("source_key"),
                    "parent_version": lineage.get("parent_version"),
                }
            )
    return sorted(out, key=lambda v: (v["created_at"] or "", v["version"]))


def promote_version(s3, bucket: str, version: str, why: str, who: str) -> dict[str, Any]:
    """Make an existing version the champion, by hand (roll forward or back). Refused unless the version is whole
    and its artifact matches the sha256 it was published with, and only if the champion did not change meanwhile
    (the same conditional write retrain uses). Precompute follows, as after any promotion."""
    from kcprice import registry

    meta = registry.version_metadata(s3, bucket, version)
    pointer, etag = registry.read_champion(s3, bucket)
    if pointer and pointer["version"] == version:
        raise ValueError(f"{version} is the champion already")
    candidate = {
        "artifact_key": registry.version_prefix(version) + "model.npz",
        "artifact_sha256": meta["artifact_sha256"],
    }
    registry.load_version(s3, bucket, candidate)  # ArtifactIntegrityError if its bytes changed; a model that loads
    reason = {"by": who, "why": why, "kind": "manual"}
    registry.promote(s3, bucket, meta, etag, reason, previous_version=pointer["version"] if pointer else None)
    return {"version": version, "previous_version": pointer["version"] if pointer else None, "reason": reason}


def rollback(s3, bucket: str, why: str, who: str) -> dict[str, Any]:
    """Back to the champion before this one (the pointer names it)."""
    from kcprice import registry
    from kcprice.errors import NoModelError

    pointer, _ = registry.read_champion(s3, bucket)
    if pointer is None:
        raise NoModelError("no champion to roll back from")
    previous = pointer.get("previous_version")
    if not previous:
        raise ValueError(f"{pointer['version']} was the first champion: there is nothing to roll back to")
    return promote_version(s3, bucket, previous, why, who)


def champion_history(s3, bucket: str) -> list[dict[str, Any]]:
    """Every position the champion pointer has had, newest first (the bucket is versioned: each write is kept)."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=layout.CHAMPION):
        for v in page.get("Versions", []):
            if v["Key"] != layout.CHAMPION:
                continue
            doc = json.loads(s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read())
            out.append(
                {
                    "version": doc["version"],
                    "promoted_at": doc.get("promoted_at"),
                    "previous_version": doc.get("previous_version"),
                    "reason": doc.get("reason"),
                    "current": v["IsLatest"],
                }
            )
    return sorted(out, key=lambda d: d["promoted_at"] or "", reverse=True)
