"""inference_service configuration, from environment variables only."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from lipsync_common.config import (
    DEFAULT_PUBLIC_URL,
    ConfigError,
    data_dir,
    env_bool,
    env_float,
    env_int,
    env_str,
    max_media_bytes,
    nats_url,
    public_url,
    service_addr,
)
from lipsync_common.uploads import uploads_dir


@dataclass(frozen=True)
class Limits:
    """Input limits of API.md, each overridable by the operator."""

    max_image_bytes: int
    max_audio_bytes: int
    max_video_bytes: int
    max_image_side: int
    max_duration_s: float
    # Total time for one download, every redirect hop included.
    download_timeout_s: float
    # Checked from the stream header, before any frame is decoded.
    max_video_side: int
    # With max_duration_s, caps a video's frame count (and refuses absurd rates).
    max_video_fps: float

    @classmethod
    def from_env(cls) -> Limits:
        # The sizes are read as the gateway reads them for uploads.
        sizes = max_media_bytes()
        return cls(
            max_image_bytes=sizes["image"],
            max_audio_bytes=sizes["audio"],
            max_video_bytes=sizes["video"],
            max_image_side=env_int("LIPSYNC_MAX_IMAGE_SIDE", 8000),
            max_duration_s=env_float("LIPSYNC_MAX_DURATION_S", 600.0),
            download_timeout_s=env_float("LIPSYNC_DOWNLOAD_TIMEOUT_S", 120.0),
            max_video_side=env_int("LIPSYNC_MAX_VIDEO_SIDE", 4096),
            max_video_fps=env_float("LIPSYNC_MAX_VIDEO_FPS", 60.0),
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
    # Jobs a worker holds at once: downloads run side by side, renders take a slot.
    concurrency: int
    # Renders at once. A render leaves cores idle (its Python steps hold the
    # GIL), so a few side by side finish sooner in all; more than cores is waste.
    render_slots: int
    limits: Limits
    # Upload URLs start with the public URL; their files are read from the
    # uploads area (this folder, or the bucket), never over HTTP.
    public_url: str = DEFAULT_PUBLIC_URL
    uploads_dir: Path | None = None

    @classmethod
    def from_env(cls) -> WorkerSettings:
        root = data_dir()
        concurrency = _positive("LIPSYNC_WORKER_CONCURRENCY", 2)
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
            concurrency=concurrency,
            render_slots=_positive("LIPSYNC_RENDER_SLOTS", min(os.cpu_count() or 1, concurrency)),
            limits=Limits.from_env(),
            public_url=public_url(),
            uploads_dir=uploads_dir(),
        )

    def uploads_folder(self) -> Path:
        return self.uploads_dir or self.results_dir.parent / "uploads"


def _positive(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, not {value}")
    return value
