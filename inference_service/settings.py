"""inference_service configuration, from environment variables only."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from lipsync_common.config import (
    data_dir,
    env_bool,
    env_float,
    env_int,
    env_str,
    nats_url,
    service_addr,
)

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Input limits of API.md, each overridable by the operator."""

    max_image_bytes: int
    max_audio_bytes: int
    max_video_bytes: int
    max_image_side: int
    max_duration_s: float
    download_timeout_s: float

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            max_image_bytes=env_int("LIPSYNC_MAX_IMAGE_MB", 20) * MB,
            max_audio_bytes=env_int("LIPSYNC_MAX_AUDIO_MB", 50) * MB,
            max_video_bytes=env_int("LIPSYNC_MAX_VIDEO_MB", 500) * MB,
            max_image_side=env_int("LIPSYNC_MAX_IMAGE_SIDE", 8000),
            max_duration_s=env_float("LIPSYNC_MAX_DURATION_S", 600.0),
            download_timeout_s=env_float("LIPSYNC_DOWNLOAD_TIMEOUT_S", 120.0),
        )


@dataclass(frozen=True)
class WorkerSettings:
    nats_url: str
    billing_addr: str
    results_dir: Path
    work_dir: Path
    allow_private_urls: bool
    engine: str
    # LIPSYNC_ENGINE=torchscript: the operator's model file and frames per device batch.
    torchscript_model: str
    torch_batch: int
    worker_name: str
    # In-progress heartbeats keep JetStream from redelivering a long render.
    heartbeat_s: float
    limits: Limits

    @classmethod
    def from_env(cls) -> WorkerSettings:
        root = data_dir()
        return cls(
            nats_url=nats_url(),
            billing_addr=service_addr("billing"),
            results_dir=Path(env_str("LIPSYNC_RESULTS_DIR", str(root / "results"))),
            work_dir=Path(env_str("LIPSYNC_WORK_DIR", str(root / "work"))),
            allow_private_urls=env_bool("LIPSYNC_ALLOW_PRIVATE_URLS", False),
            engine=env_str("LIPSYNC_ENGINE", "builtin"),
            torchscript_model=env_str("LIPSYNC_TORCHSCRIPT_MODEL", ""),
            torch_batch=env_int("LIPSYNC_TORCH_BATCH", 32),
            worker_name=env_str("LIPSYNC_WORKER_NAME", f"{socket.gethostname()}-{os.getpid()}"),
            heartbeat_s=env_float("LIPSYNC_HEARTBEAT_S", 15.0),
            limits=Limits.from_env(),
        )
