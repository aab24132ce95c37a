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
