"""The local stack's data on disk, so that it survives a restart (moto keeps everything in memory).

What is kept, in .kclocal/state/ (git-ignored): every version of every S3 object and every delete marker, in
order (so the champion pointer's history survives too); every item of every table; the messages waiting in every
queue (the failure queue, and S3 notifications not yet handled: their functions run again after a restart, as
Lambda's at-least-once delivery would). Saved every few seconds when the endpoint reports a change, and on stop;
restored on start, before the bucket's notifications are switched on (a restored upload does not retrain).
`kcprice-local up --fresh` starts empty (and keeps the old state aside as state.old/).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path

import requests

log = logging.getLogger("kclocal.state")


class State:
    def __init__(self, folder: Path):
        self.folder = folder
        self.blobs = folder / "s3" / "blobs"
        self._lock = threading.Lock()
        self._seen_changes: dict | None = None

    # --- paths -----------------------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.folder / "s3" / "versions.json"

    def exists(self) -> bool:
        return self._index_path().exists()

    def wipe(self) -> None:
        if self.folder.exists():
            old = self.folder.with_name(self.folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            self.folder.rename(old)

    # --- saving ----------------------------------------------------------------------------------------------
    def save(self, stack, force: bool = False) -> dict | None:
        """Write what changed since the last save (everything when forced). Returns counts, or None if unchanged."""
        with self._lock:
            changes = requests.get(f"{stack.endpoint}/_kclocal/changes", timeout=10).json()
            if not force and changes == self._seen_changes:
                return None
            self.folder.mkdir(parents=True, exist_ok=True)
            counts = {
                "versions": self._save_s3(stack),
                "items": self._save_tables(stack),
                "messages": self._save_queues(stack),
            }
            self._seen_changes = changes
            return counts

    def _save_s3(self, stack) -> int:
        s3 = stack.client("s3")
        bucket = stack.spec.bucket
        known = {e["version_id"]: e for e in self._read_index()}
        entries: list[dict] = []
        per_key: dict[str, list[dict]] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for kind in ("DeleteMarkers", "Versions"):  # reversed below: versions before markers at a tie
                for v in page.get(kind, []):
                    per_key.setdefault(v["Key"], []).append({**v, "deleted": kind == "DeleteMarkers"})
        self.blobs.mkdir(parents=True, exist_ok=True)
        for key, versions in per_key.items():
            # S3 lists a key's versions (and, apart, its delete markers) newest first: oldest first is that order
            # reversed, sorted stably by time, the current one (IsLatest) last, so that two writes within one
            # timestamp tick keep their real order.
            versions.reverse()
            versions.sort(key=lambda v: (v["LastModified"], v["IsLatest"]))
            for v in versions:
                entry = known.get(v["VersionId"])
                if entry is None:
                    entry = {
                        "key": key,
                        "version_id": v["VersionId"],
                        "deleted": v["deleted"],
                        "modified": v["LastModified"].isoformat(),
                    }
                    if not v["deleted"]:
                        obj = s3.get_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
                        body = obj["Body"].read()
                        digest = hashlib.sha256(body).hexdigest()
                        (self.blobs / digest).write_bytes(body)
                        entry.update(sha256=digest, content_type=obj.get("ContentType"))
                entries.append(entry)
        entries.sort(key=lambda e: e["modified"])
        self._write(self._index_path(), entries)
        return len(entries)

    def _read_index(self) -> list[dict]:
        return json.loads(self._index_path().read_text()) if self.exists() else []

    def _save_tables(self, stack) -> int:
        ddb = stack.client("dynamodb")
        total = 0
        for table in stack.spec.tables.values():
            items = [i for p in ddb.get_paginator("scan").paginate(TableName=table.name) for i in p["Items"]]
            self._write(self.folder / "dynamodb" / f"{table.logical}.json", items)
            total += len(items)
        return total

    def _save_queues(self, stack) -> int:
        sqs = stack.client("sqs")
        total = 0
        for url in sqs.list_queues().get("QueueUrls", []):
            seen: dict[str, dict] = {}
            for _ in range(1000):  # every visible message, left visible (visibility 0)
                got = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
                ).get("Messages", [])
                fresh = [m for m in got if m["MessageId"] not in seen]
                if not fresh:
                    break
                seen.update({m["MessageId"]: {"body": m["Body"]} for m in fresh})
            self._write(self.folder / "sqs" / f"{url.rsplit('/', 1)[-1]}.json", list(seen.values()))
            total += len(seen)
        return total

    @staticmethod
    def _write(path: Path, doc) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        tmp.replace(path)  # atomic: a save cut short leaves the previous file

    # --- restoring -------------------------------------------------------------------------------------------
    def restore(self, stack) -> dict:
        """Put everything back (the resources must exist, notifications must still be off)."""
        s3, bucket = stack.client("s3"), stack.spec.bucket
        versions = 0
        for e in self._read_index():
            if e["deleted"]:
                s3.delete_object(Bucket=bucket, Key=e["key"])
            else:
                extra = {"ContentType": e["content_type"]} if e.get("content_type") else {}
                s3.put_object(Bucket=bucket, Key=e["key"], Body=(self.blobs / e["sha256"]).read_bytes(), **extra)
            versions += 1
        ddb = stack.client("dynamodb")
        items = 0
        for table in stack.spec.tables.values():
            path = self.folder / "dynamodb" / f"{table.logical}.json"
            rows = json.loads(path.read_text()) if path.exists() else []
            for i in range(0, len(rows), 25):
                pending = [{"PutRequest": {"Item": r}} for r in rows[i : i + 25]]
                while pending:
                    out = ddb.batch_write_item(RequestItems={table.name: pending})
                    pending = out.get("UnprocessedItems", {}).get(table.name, [])
            items += len(rows)
        sqs = stack.client("sqs")
        messages = 0
        for path in sorted((self.folder / "sqs").glob("*.json")) if (self.folder / "sqs").exists() else []:
            url = sqs.get_queue_url(QueueName=path.stem)["QueueUrl"]
            for m in json.loads(path.read_text()):
                sqs.send_message(QueueUrl=url, MessageBody=m["body"])
                messages += 1
        self._seen_changes = None
        return {"versions": versions, "items": items, "messages": messages}
