"""Operations on a deployed stack (or the local one): what `kcprice` does for operators. Workstation side only:
the functions never import this module."""

from __future__ import annotations

from collections.abc import Callable


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
