"""Stream a source video's frames at the output rate and size, and loop it back and forth.

Frames are decoded one at a time and converted (scaled to the output height,
BGR) only when the output needs them, so memory does not grow with the
video's length. The output frame rate is the source's, capped at 30 fps;
a faster source drops frames by timestamp.

Extending a short video by ping-pong (forward, backward, forward, ...) needs
the frames again in reverse order. Memory is bounded by ``cache_bytes``:

* if the whole (scaled) video fits, the first pass keeps it and later passes
  replay the cache (the common case: a clip of a few seconds);
* otherwise the backward passes decode the video again in chunks that fit
  the budget, last chunk first (seek to the chunk's start, decode forward,
  emit reversed). Each chunk costs at most one GOP of extra decoding; a video
  with very long GOPs is slower to loop, never larger in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import av.container
import numpy as np
import numpy.typing as npt

from inference_service.media.encode import even_size
from inference_service.media.errors import MediaError, short_reason

UInt8Array = npt.NDArray[np.uint8]

MAX_FPS = Fraction(30)
# Default ping-pong budget: ~95 frames at 720p, ~200 at 480p (a 10-minute 720p job, audio
# included, then peaks near 1 GB).
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


def _undecodable(exc: BaseException) -> MediaError:
    return MediaError(f"video could not be decoded: {short_reason(exc).lower()}")


class VideoReader:
    """Frames of the first video stream, indexed at the output rate, scaled to ``height``."""

    def __init__(self, path: str | Path, height: int) -> None:
        self.path = str(path)
        try:
            with av.open(self.path, mode="r") as container:
                if not container.streams.video:
                    raise MediaError("video has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                source_w = int(stream.codec_context.width or 0)
                source_h = int(stream.codec_context.height or 0)
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise _undecodable(exc) from exc
        if not rate or source_w <= 0 or source_h <= 0:
            raise MediaError("video could not be decoded: unknown frame size or frame rate")
        self.source_fps = Fraction(rate)
        # Keep NTSC rates exact (30000/1001) so audio and video never drift apart.
        self.fps = min(self.source_fps, MAX_FPS)
        self.width, self.height = even_size(source_w * height / source_h, height)
        self._start_time: float | None = None

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[UInt8Array]:
        """Output frames ``start`` .. ``stop - 1`` (to the end when ``stop`` is None)."""
        try:
            with av.open(self.path, mode="r") as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                if start > 0:
                    self._seek(container, stream, start)
                yield from self._decode(container, stream, start, stop)
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
            raise _undecodable(exc) from exc

    def _seek(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream, k: int
    ) -> None:
        if stream.time_base is None or self._start_time is None:
            return  # decode from the start and skip: slow, but correct
        target = self._start_time + (k - 0.5) / float(self.fps)
        container.seek(max(0, int(target / stream.time_base)), stream=stream, backward=True)

    def _decode(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        start: int,
        stop: int | None,
    ) -> Iterator[UInt8Array]:
        wanted = start
        decoded = 0
        fps = float(self.fps)
        for frame in container.decode(stream):
            if frame.time is None:
                position = decoded * fps / float(self.source_fps)
            else:
                if self._start_time is None:
                    self._start_time = float(frame.time)
                position = (float(frame.time) - self._start_time) * fps
            decoded += 1
            # Output frame k shows the first source frame at or after time (k - 0.5) / fps.
            if wanted >= position + 0.5:
                continue
            image = np.asarray(
                frame.to_ndarray(
                    width=self.width, height=self.height, format="bgr24", interpolation="AREA"
                ),
                np.uint8,
            )
            while wanted < position + 0.5:
                if stop is not None and wanted >= stop:
                    return
                yield image
                wanted += 1


def ping_pong(reader: VideoReader, count: int, cache_bytes: int) -> Iterator[UInt8Array]:
    """Exactly ``count`` frames: the video forward, then backward, forward, ... as needed.

    Turning points are not repeated (..., n-2, n-1, n-2, ...), so motion reverses
    without a held frame. Yielded arrays must not be modified by the caller.
    """
    frame_bytes = reader.width * reader.height * 3
    cache: list[UInt8Array] | None = []
    produced = 0
    for frame in reader.frames():
        if produced == count:
            return
        if cache is not None:
            cache.append(frame)
            if len(cache) * frame_bytes > cache_bytes:
                cache = None
        produced += 1
        yield frame
    total = produced
    if total == 0:
        raise MediaError("video could not be decoded: it holds no frames")
    if total == 1:
        assert cache is not None
        for _ in range(count - produced):
            yield cache[0]
        return
    backward = True
    while produced < count:
        # One pass without its first frame (the turning point already shown).
        span = range(total - 2, -1, -1) if backward else range(1, total)
        remaining = count - produced
        if cache is not None:
            frames: Iterator[UInt8Array] = (cache[i] for i in span)
        elif backward:
            frames = _backward(reader, total - 1, max(1, cache_bytes // frame_bytes))
        else:
            frames = reader.frames(1, total)
        for frame in frames:
            if remaining == 0:
                break
            yield frame
            remaining -= 1
            produced += 1
        backward = not backward


def _backward(reader: VideoReader, end: int, chunk: int) -> Iterator[UInt8Array]:
    """Frames ``end - 1`` down to 0, decoded forward in chunks of ``chunk`` frames."""
    while end > 0:
        start = max(0, end - chunk)
        buffer = list(reader.frames(start, end))
        yield from reversed(buffer)
        end = start
