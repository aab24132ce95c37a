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
# Called with (frames done, frames in all) as a render starts and after each batch; the
# worker reports progress with it, and stops a canceled render by raising from it.
FrameCallback = Callable[[int, int], None]
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
    total: int,
    on_frames: FrameCallback | None = None,
) -> int:
    """Encode every job's frame with ``audio``; returns the frame count.

    ``timings`` gains ``render`` (animation and post-processing) and ``encode``;
    the job iterator adds its own stages (decode, detect). ``on_frames`` hears
    ``(0, total)`` before the first frame and ``(done, total)`` after each batch.
    A failure, one raised by ``on_frames`` included, removes the partial output so
    no half-written file is ever stored.
    """
    report = on_frames or _ignore_frames
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
            sound = _AudioFeed(writer, audio, fps)
            report(0, total)
            batch: list[FrameJob] = []
            for job in ahead:
                batch.append(job)
                if len(batch) < batch_size:
                    continue
                sound.feed_until(frames + len(batch))
                render_s += _flush(batch, animation, post, writer)
                frames += len(batch)
                report(frames, total)
                batch = []
            if batch:
                sound.feed_until(frames + len(batch))
                render_s += _flush(batch, animation, post, writer)
                frames += len(batch)
                report(frames, total)
            sound.feed_rest()
        timings["encode"] = timings.get("encode", 0.0) + writer.encode_s
    except BaseException:
        with contextlib.suppress(OSError):
            Path(out_path).unlink()
        raise
    timings["render"] = timings.get("render", 0.0) + render_s
    return frames


def _ignore_frames(done: int, total: int) -> None:
    pass


class _AudioFeed:
    """Hands the writer the job's audio a batch at a time, just ahead of the frames.

    A closing writer encodes all the audio it was given, even on the way out of a
    failure: given the whole track up front, a render stopped early (a cancel)
    would first encode the rest of up to ten minutes of audio. Fed ahead of each
    batch, the writer muxes exactly what it did before, in the same packets.
    """

    def __init__(self, writer: Mp4Writer, audio: JobAudio, fps: Fraction) -> None:
        self.writer = writer
        self.samples = audio.output
        self.fps = fps
        self.fed = 0

    def feed_until(self, frames: int) -> None:
        """Give the writer the audio that the first `frames` frames last (its own pacing)."""
        end = frames * AUDIO_RATE * self.fps.denominator // self.fps.numerator
        if end > self.fed:
            self.writer.write_audio(self.samples[:, self.fed : end])
            self.fed = end

    def feed_rest(self) -> None:
        self.writer.write_audio(self.samples[:, self.fed :])
        self.fed = self.samples.shape[1]


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
