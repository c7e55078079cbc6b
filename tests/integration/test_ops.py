"""Operator commands against the local endpoint."""

from kcprice.ops import delete_bucket, empty_bucket


def test_teardown_empties_every_version_of_the_versioned_bucket(aws):
    s3 = aws.s3
    for i in range(3):  # three versions of one key, a delete marker, and 1,200 objects (more than one batch)
        s3.put_object(Bucket=aws.bucket, Key="models/champion.json", Body=str(i).encode())
    s3.delete_object(Bucket=aws.bucket, Key="models/champion.json")
    for i in range(1200):
        s3.put_object(Bucket=aws.bucket, Key=f"reports/{i}.json", Body=b"{}")
    versions = s3.list_object_versions(Bucket=aws.bucket, Prefix="models/")
    assert len(versions["Versions"]) == 3 and len(versions["DeleteMarkers"]) == 1
    assert empty_bucket(s3, aws.bucket, say=lambda _: None) == 1204
    left = s3.list_object_versions(Bucket=aws.bucket)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    delete_bucket(s3, aws.bucket, say=lambda _: None)
    assert aws.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
