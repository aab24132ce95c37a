"""The object store as an S3-compatible bucket (AWS S3, SeaweedFS, MinIO, ...).

Objects lie at `<prefix><key>`. A put is boto3's managed transfer: a file over
`part_bytes` goes up as a multipart upload read from disk one part at a time
(never the whole file in memory), and S3 shows the object only once the
upload completes. The client is synchronous; callers on an event loop run it in
`asyncio.to_thread` (the client is thread-safe).

An endpoint other than AWS's (`LIPSYNC_S3_ENDPOINT_URL`) is addressed path-style
(`http://host/bucket/key`), which every S3-compatible server accepts, where the
virtual-host style would need a DNS name per bucket. Presigned URLs are signed
for `public_endpoint_url` when one is set (the host is part of the signature),
so that a client outside the cluster can use them.

Clients may send a file straight into the bucket (`post_form`): a presigned
POST whose policy names the one key, the exact size (`content-length-range`
with the same minimum and maximum) and the content type, so the bucket itself
refuses a larger body, another key or another type (AWS S3 checks these
conditions, and so does SeaweedFS: tests/integration/test_direct_uploads.py);
a presigned PUT would bound the size only where the server checks a signed
Content-Length, and says nothing of the limit to the client. `size` and
`read_start` (a HEAD and a ranged GET) let the gateway check what arrived
without reading it all, and `copy` is the bucket's own copy (a multipart copy past `part_bytes`),
so no byte goes through the gateway.

`expire_after` puts one lifecycle rule of ours (by its id, on our prefix) into
the bucket's configuration, keeping the operator's other rules. S3 counts
lifecycle ages in whole days from an object's creation, so the rule rounds the
retention up: an object never goes before its URL does. A server without
lifecycle support (or credentials without the permission) answers an error:
`expire_after` logs it and says False, and job_service's sweep still removes
the expired outputs.
"""

from __future__ import annotations

import logging
import math
import mimetypes
from pathlib import Path
from typing import Any, BinaryIO, cast

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from lipsync_common.config import StorageSettings
from lipsync_common.storage import NotStored, PresignedPost, check_key

log = logging.getLogger(__name__)

DEFAULT_PART_BYTES = 8 * 1024 * 1024
LIFECYCLE_RULE_ID = "lipsync-expiry"
DAY_S = 24 * 3600
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class S3Store:
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        part_bytes: int = DEFAULT_PART_BYTES,
        signer: Any = None,
    ) -> None:
        self.client = client
        # Presigns only (no request is sent with it): the client for the public address.
        self.signer = signer or client
        self.bucket = bucket
        self.prefix = prefix
        self.transfer = TransferConfig(
            multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=4
        )

    @classmethod
    def connect(
        cls, settings: StorageSettings, prefix: str, part_bytes: int = DEFAULT_PART_BYTES
    ) -> S3Store:
        if settings.bucket is None:
            raise ValueError("no bucket: LIPSYNC_STORAGE_URL is not an s3:// URL")
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
        )
        # A session of its own: boto3's default session is not thread-safe to create
        # clients from, and the client is then shared by the worker threads.
        session = boto3.session.Session()

        def client_for(endpoint_url: str | None) -> Any:
            return session.client(
                "s3", endpoint_url=endpoint_url, region_name=settings.region, config=config
            )

        client = client_for(settings.endpoint_url)
        signer = client_for(settings.public_endpoint_url) if settings.public_endpoint_url else None
        return cls(client, settings.bucket, prefix, part_bytes, signer)

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, source: Path) -> str:
        content_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        self.client.upload_file(
            str(source),
            self.bucket,
            self._name(key),
            ExtraArgs={"ContentType": content_type},
            Config=self.transfer,
        )
        source.unlink(missing_ok=True)
        return key

    def delete(self, key: str) -> bool:
        # DeleteObject answers the same whether or not there was one; the HEAD tells.
        existed = self.exists(key)
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        return existed

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def open(self, key: str) -> BinaryIO:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _missing(exc):
                raise NotStored(key) from None
            raise
        return cast(BinaryIO, reply["Body"])

    def local_path(self, key: str) -> Path | None:
        return None

    def url(self, key: str, expires_s: int, method: str = "GET") -> str | None:
        operation = {"GET": "get_object", "HEAD": "head_object"}[method]
        return str(
            self.signer.generate_presigned_url(
                operation,
                Params={"Bucket": self.bucket, "Key": self._name(key)},
                ExpiresIn=expires_s,
            )
        )

    def upload_url(self, key: str, expires_s: int) -> str | None:
        return str(
            self.signer.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": self._name(key)},
                ExpiresIn=expires_s,
            )
        )

    def post_form(self, key: str, size: int, content_type: str, expires_s: int) -> PresignedPost:
        form = self.signer.generate_presigned_post(
            Bucket=self.bucket,
            Key=self._name(key),
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", size, size]],
            ExpiresIn=expires_s,
        )
        return PresignedPost(str(form["url"]), {k: str(v) for k, v in form["fields"].items()})

    def size(self, key: str) -> int | None:
        try:
            reply = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(reply["ContentLength"])

    def read_start(self, key: str, count: int) -> bytes:
        try:
            reply = self.client.get_object(
                Bucket=self.bucket, Key=self._name(key), Range=f"bytes=0-{count - 1}"
            )
        except ClientError as exc:
            if _missing(exc):
                raise NotStored(key) from None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""  # an empty object has no byte 0
            raise
        with reply["Body"] as body:
            return bytes(body.read(count))

    def copy(self, source: str, target: str, content_type: str) -> None:
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._name(source)},
                self.bucket,
                self._name(target),
                ExtraArgs={"ContentType": content_type, "MetadataDirective": "REPLACE"},
                Config=self.transfer,
            )
        except ClientError as exc:
            if _missing(exc):
                raise NotStored(source) from None
            raise

    def expire_after(self, seconds: float) -> bool:
        slug = self.prefix.strip("/").replace("/", "-")
        rule = {
            "ID": f"{LIFECYCLE_RULE_ID}-{slug}" if slug else LIFECYCLE_RULE_ID,
            "Filter": {"Prefix": self.prefix},
            "Status": "Enabled",
            "Expiration": {"Days": max(1, math.ceil(seconds / DAY_S))},
        }
        try:
            rules = self._lifecycle_rules()
            kept = [r for r in rules if r.get("ID") != rule["ID"]]
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [*kept, rule]}
            )
        except ClientError as exc:
            log.warning(
                "bucket lifecycle rule not set; the retention sweep removes old objects",
                extra={"fields": {"bucket": self.bucket, "error": str(exc)}},
            )
            return False
        return True

    def _lifecycle_rules(self) -> list[dict[str, Any]]:
        try:
            reply = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise
        return list(reply.get("Rules", []))
