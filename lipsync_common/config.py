"""Configuration read from environment variables, and nothing else.

Every variable is listed in the README. Each service reads its settings once,
at start-up, through these helpers, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Default addresses of the local stack. The gRPC and NATS ports are chosen away
# from the well-known ones so that `make run` never collides with a system
# NATS on 4222 or another gRPC server on 50051.
DEFAULT_HTTP_ADDR = "127.0.0.1:8080"
# The gateway's /metrics, on a port of its own so that the API port (the one an
# Ingress exposes) never serves it.
DEFAULT_GATEWAY_METRICS_ADDR = "127.0.0.1:9150"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
DEFAULT_EMBEDDED_NATS_PORT = 14222
DEFAULT_SERVICE_ADDRS = {
    "auth": "127.0.0.1:50151",
    "billing": "127.0.0.1:50152",
    "jobs": "127.0.0.1:50153",
    "inference": "127.0.0.1:50154",
}
DEFAULT_METRICS_ADDRS = {
    "auth": "127.0.0.1:9151",
    "billing": "127.0.0.1:9152",
    "jobs": "127.0.0.1:9153",
    "inference": "127.0.0.1:9154",
}


class ConfigError(ValueError):
    """A configuration variable has a value that cannot be used."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None


def data_dir() -> Path:
    """`LIPSYNC_DATA_DIR`, created if missing; every local file lives under it."""
    path = Path(env_str("LIPSYNC_DATA_DIR", "./var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def public_url() -> str:
    """`LIPSYNC_PUBLIC_URL`: where clients reach the gateway, without a trailing `/`.

    Upload URLs start with it, so the gateway and the workers both read it here."""
    return env_str("LIPSYNC_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/")


MB = 1024 * 1024


def max_media_bytes() -> dict[str, int]:
    """The size limit of each kind of input (`image`, `audio`, `video`), in bytes.

    One reading of `LIPSYNC_MAX_IMAGE_MB`, `LIPSYNC_MAX_AUDIO_MB` and
    `LIPSYNC_MAX_VIDEO_MB` for the workers' downloads and the gateway's uploads,
    so an uploaded file is never refused later by the worker for its size."""
    return {
        "image": env_int("LIPSYNC_MAX_IMAGE_MB", 20) * MB,
        "audio": env_int("LIPSYNC_MAX_AUDIO_MB", 50) * MB,
        "video": env_int("LIPSYNC_MAX_VIDEO_MB", 500) * MB,
    }


def nats_url() -> str:
    """`LIPSYNC_NATS_URL`, or the embedded server that `make run` starts."""
    port = env_int("LIPSYNC_EMBEDDED_NATS_PORT", DEFAULT_EMBEDDED_NATS_PORT)
    return env_str("LIPSYNC_NATS_URL", f"nats://127.0.0.1:{port}")


def service_addr(service: str) -> str:
    """Where clients reach a gRPC service: `LIPSYNC_<SERVICE>_ADDR`."""
    return env_str(f"LIPSYNC_{service.upper()}_ADDR", DEFAULT_SERVICE_ADDRS[service])


def database_url(service: str) -> str:
    """`LIPSYNC_<SERVICE>_DATABASE_URL`, by default a SQLite file in the data dir."""
    default = f"sqlite:///{data_dir() / f'{service}.db'}"
    return env_str(f"LIPSYNC_{service.upper()}_DATABASE_URL", default)


@dataclass(frozen=True)
class ServerSettings:
    """Where one gRPC service process listens."""

    name: str
    grpc_listen: str
    metrics_addr: str
    grace_seconds: float

    @classmethod
    def from_env(cls, service: str) -> ServerSettings:
        return cls(
            name=service,
            # In a cluster the process binds 0.0.0.0:PORT while clients dial the
            # Kubernetes Service name, so the listen address is its own variable.
            grpc_listen=env_str("LIPSYNC_GRPC_LISTEN", service_addr(service)),
            metrics_addr=env_str("LIPSYNC_METRICS_ADDR", DEFAULT_METRICS_ADDRS[service]),
            grace_seconds=env_float("LIPSYNC_SHUTDOWN_GRACE_S", 10.0),
        )


def split_host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"address must be HOST:PORT, not {addr!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class StorageSettings:
    """Where results and uploads are stored (lipsync_common/storage.py).

    `LIPSYNC_STORAGE_URL` unset: files under the data directory. `s3://bucket/prefix`:
    that bucket, at `LIPSYNC_S3_ENDPOINT_URL` (unset: AWS itself), in `AWS_REGION`;
    the credentials are boto3's usual chain (`AWS_ACCESS_KEY_ID` and
    `AWS_SECRET_ACCESS_KEY`, or the pod's role), never read here.
    `LIPSYNC_S3_PUBLIC_ENDPOINT_URL` is the same store as clients reach it, for
    presigned URLs, where the services use an address that only the cluster
    resolves (`http://seaweedfs:8333`); unset, the endpoint itself.
    """

    bucket: str | None = None
    # "" or ends with "/": the areas (results/, uploads/) lie under it.
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    public_endpoint_url: str | None = None

    @classmethod
    def from_env(cls) -> StorageSettings:
        url = env_str("LIPSYNC_STORAGE_URL", "")
        region = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
        endpoint = env_str("LIPSYNC_S3_ENDPOINT_URL", "") or None
        public = env_str("LIPSYNC_S3_PUBLIC_ENDPOINT_URL", "") or None
        if not url:
            return cls(region=region, endpoint_url=endpoint, public_endpoint_url=public)
        scheme, sep, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if scheme != "s3" or not sep or not bucket:
            raise ConfigError(f"LIPSYNC_STORAGE_URL must be s3://bucket[/prefix], not {url!r}")
        prefix = prefix.strip("/")
        return cls(
            bucket=bucket,
            prefix=f"{prefix}/" if prefix else "",
            endpoint_url=endpoint,
            region=region,
            public_endpoint_url=public,
        )
