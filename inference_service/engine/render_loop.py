"""Pull frame jobs, animate them in batches, post-process, encode: one streaming loop.

The jobs (decoding and face tracking, for video) are produced on a helper thread a
few frames ahead, so that work overlaps rendering and encoding: OpenCV, FFmpeg and
x264 release the GIL, and on two cores that is most of the gain to be had.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inference_service.engine.animator import Animation, FrameJob
from inference_service.engine.job_audio import AUDIO_RATE, JobAudio
from inference_service.media.encode import Mp4Writer

UInt8Array = npt.NDArray[np.uint8]
PostProcess = Callable[[FrameJob, UInt8Array], UInt8Array]
# Frames decoded ahead of the encoder: enough to smooth out detection spikes, few enough
# that memory stays small (8 frames at 720p are 22 MB).
PREFETCH = 8
_DONE = object()


def prefetch(jobs: Iterator[FrameJob], depth: int = PREFETCH) -> Generator[FrameJob, None, None]:
    """Run ``jobs`` on a helper thread, ``depth`` items ahead; re-raises its exceptions."""
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for job in jobs:
                if stop.is_set():
                    return
                items.put(job)
            items.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            items.put(exc)

    thread = threading.Thread(target=produce, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, FrameJob)
            yield item
    finally:
        stop.set()
        # Unblock a producer waiting on a full queue, then let it finish.
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
        thread.join()


def write_video(
    out_path: str | Path,
    jobs: Iterator[FrameJob],
    audio: JobAudio,
    *,
    animation: Animation,
    batch_size: int,
    fps: Fraction,
    size: tuple[int, int],
    post: PostProcess,
    timings: dict[str, float],
    crf: int,
    preset: str,
) -> int:
    """Encode every job's frame with ``audio``; returns the frame count.

    ``timings`` gains ``render`` (animation and post-processing) and ``encode``;
    the job iterator adds its own stages (decode, detect). A failure removes the
    partial output so no half-written file is ever stored.
    """
    width, height = size
    frames = 0
    render_s = 0.0
    try:
        with (
            Mp4Writer(
                out_path,
                width=width,
                height=height,
                fps=fps,
                audio_rate=AUDIO_RATE,
                audio_channels=audio.output.shape[0],
                crf=crf,
                preset=preset,
            ) as writer,
            contextlib.closing(prefetch(jobs)) as ahead,
        ):
            # Closed on the way out, not when collected: once this returns or raises, the
            # helper thread has stopped using the render's state (its face models).
            writer.write_audio(audio.output)
            batch: list[FrameJob] = []
            for job in ahead:
                batch.append(job)
                if len(batch) < batch_size:
                    continue
                render_s += _flush(batch, animation, post, writer)
                frames += len(batch)
                batch = []
            if batch:
                render_s += _flush(batch, animation, post, writer)
                frames += len(batch)
        timings["encode"] = timings.get("encode", 0.0) + writer.encode_s
    except BaseException:
        with contextlib.suppress(OSError):
            Path(out_path).unlink()
        raise
    timings["render"] = timings.get("render", 0.0) + render_s
    return frames


def _flush(
    batch: list[FrameJob], animation: Animation, post: PostProcess, writer: Mp4Writer
) -> float:
    started = time.perf_counter()
    rendered = animation.animate(batch)
    finished = [post(job, frame) for job, frame in zip(batch, rendered, strict=True)]
    render_s = time.perf_counter() - started
    for frame in finished:
        writer.write_bgr(frame)
    return render_s
