"""What each model needs from a worker: its media inputs and its engine call.

This is the one place in the worker that branches on the model (the case of
`JobSpec.inputs`); the pipeline around it is the same for every model. A new
model adds one branch here, one in billing's pricing and one in the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.engine.render_loop import FrameCallback
from inference_service.failures import JobFailure
from lipsync.jobs.v1 import jobs_pb2
from lipsync_common.job_spec import ORDER_NAMES

MediaKind = Literal["image", "audio", "video"]
HEIGHTS = {jobs_pb2.RESOLUTION_480P: 480, jobs_pb2.RESOLUTION_720P: 720}


@dataclass(frozen=True)
class MediaInput:
    """One input to download: its formState field name, URL and kind."""

    name: str
    url: str
    kind: MediaKind


@dataclass(frozen=True)
class RenderOptions:
    """What every model's engine call takes besides its media."""

    height: int
    seed: int | None
    mask_path: str | None
    # Progress and cancel: called as the render starts and after each batch of frames.
    on_frames: FrameCallback | None = None


# The engine call of a model: (engine, downloaded paths by input name, output, options).
Render = Callable[[LipsyncEngine, dict[str, Path], Path, RenderOptions], RenderResult]


@dataclass(frozen=True)
class JobInputs:
    """A job's media, the audio inputs whose durations billing prices, and its render."""

    media: tuple[MediaInput, ...]
    # In the order billing's Usage.duration_seconds expects them.
    priced_audio: tuple[str, ...]
    render: Render


def job_inputs(spec: jobs_pb2.JobSpec) -> JobInputs:
    """The inputs of the spec's model; JobFailure for a model this worker does not know."""
    case = spec.WhichOneof("inputs")
    media: tuple[MediaInput, ...]
    if case == "lipsync_video":
        video = spec.lipsync_video
        media = (
            MediaInput("video", video.video, "video"),
            MediaInput("audio", video.audio, "audio"),
        )
        return _with_mask(spec, media, ("audio",), _render_video)
    if case == "lipsync_image":
        image = spec.lipsync_image
        media = (
            MediaInput("image", image.image, "image"),
            MediaInput("audio", image.audio, "audio"),
        )
        return _with_mask(spec, media, ("audio",), _render_image)
    if case == "lipsync_image_multi":
        multi = spec.lipsync_image_multi
        media = (
            MediaInput("image", multi.image, "image"),
            _audio("left_audio", multi.left_audio),
            _audio("right_audio", multi.right_audio),
        )
        order = ORDER_NAMES.get(multi.order, "left_right")
        return _with_mask(spec, media, ("left_audio", "right_audio"), _render_multi(order))
    raise JobFailure("unknown model; nothing was charged")


def render_options(
    spec: jobs_pb2.JobSpec, paths: dict[str, Path], on_frames: FrameCallback | None = None
) -> RenderOptions:
    # formState.prompt is accepted and ignored by the built-in engine (CAPABILITIES.md).
    seed = spec.seed if spec.HasField("seed") and spec.seed >= 0 else None
    mask = str(paths["mask_image"]) if "mask_image" in paths else None
    return RenderOptions(
        height=HEIGHTS.get(spec.resolution, 480), seed=seed, mask_path=mask, on_frames=on_frames
    )


def _audio(name: str, url: str) -> MediaInput:
    return MediaInput(name, url, "audio")


def _with_mask(
    spec: jobs_pb2.JobSpec,
    media: tuple[MediaInput, ...],
    priced_audio: tuple[str, ...],
    render: Render,
) -> JobInputs:
    if spec.mask_image:
        media = (*media, MediaInput("mask_image", spec.mask_image, "image"))
    return JobInputs(media=media, priced_audio=priced_audio, render=render)


def _render_video(
    engine: LipsyncEngine, paths: dict[str, Path], out: Path, options: RenderOptions
) -> RenderResult:
    return engine.render_video(
        str(paths["video"]),
        str(paths["audio"]),
        str(out),
        height=options.height,
        seed=options.seed,
        mask_path=options.mask_path,
        on_frames=options.on_frames,
    )


def _render_image(
    engine: LipsyncEngine, paths: dict[str, Path], out: Path, options: RenderOptions
) -> RenderResult:
    return engine.render_image(
        str(paths["image"]),
        str(paths["audio"]),
        str(out),
        height=options.height,
        seed=options.seed,
        mask_path=options.mask_path,
        on_frames=options.on_frames,
    )


def _render_multi(order: str) -> Render:
    def render(
        engine: LipsyncEngine, paths: dict[str, Path], out: Path, options: RenderOptions
    ) -> RenderResult:
        return engine.render_multi(
            str(paths["image"]),
            str(paths["left_audio"]),
            str(paths["right_audio"]),
            str(out),
            order=order,
            height=options.height,
            seed=options.seed,
            mask_path=options.mask_path,
            on_frames=options.on_frames,
        )

    return render
