"""Cheap facts about input and output media: durations, sizes, codecs.

The worker prices a job from these numbers before it renders anything, so
probing must be fast and must reject what cannot be rendered with a message
the user can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container

from inference_service.media.errors import MediaError, short_reason
from inference_service.media.image_header import read_image_header

DEFAULT_MAX_IMAGE_SIDE = 8000


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str  # "png", "jpeg" or "webp"


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class OutputInfo:
    """What a rendered MP4 holds; used by tests and by the worker's sanity check."""

    duration_s: float
    width: int
    height: int
    video_codec: str
    audio_codec: str | None
    frames: int


def _open(path: str | Path, kind: str) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{kind} could not be decoded: {short_reason(exc).lower()}") from exc


def probe_audio(path: str | Path, *, max_duration_s: float | None = None) -> AudioInfo:
    """Duration and format of the first audio stream of any FFmpeg-readable file.

    A video file with a sound track is fine (the API accepts M4A/AAC). When the
    container states no duration (raw streams, some OGG files) we decode the
    stream once to count samples, so the price is never a guess.
    """
    with _open(path, "audio") as container:
        if not container.streams.audio:
            raise MediaError("audio could not be decoded: the file has no audio stream")
        stream = container.streams.audio[0]
        sample_rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 0)
        duration = _stream_duration(container, stream)
        if duration is None:
            duration, sample_rate, channels = _count_samples(container, stream)
    if sample_rate <= 0 or channels <= 0:
        raise MediaError("audio could not be decoded: unknown sample rate or channel layout")
    if duration <= 0:
        raise MediaError("audio could not be decoded: the audio is empty")
    if max_duration_s is not None and duration > max_duration_s:
        raise MediaError(f"audio is {duration:.1f} s long, over the limit of {max_duration_s:g} s")
    return AudioInfo(duration_s=duration, sample_rate=sample_rate, channels=channels)


def _stream_duration(
    container: av.container.InputContainer, stream: av.stream.Stream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return float(Fraction(container.duration, av.time_base))
    return None


def _count_samples(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> tuple[float, int, int]:
    samples = 0
    rate = 0
    channels = 0
    try:
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
            channels = len(frame.layout.channels)
    except av.FFmpegError as exc:
        raise MediaError(f"audio could not be decoded: {short_reason(exc).lower()}") from exc
    return (samples / rate if rate else 0.0), rate, channels


def probe_image(path: str | Path, max_pixels_side: int = DEFAULT_MAX_IMAGE_SIDE) -> ImageInfo:
    """Format and size from the header only; oversized images are refused undecoded."""
    try:
        with open(path, "rb") as stream:
            header = read_image_header(stream)
    except OSError as exc:
        raise MediaError(f"image could not be decoded: {short_reason(exc).lower()}") from exc
    if header.width > max_pixels_side or header.height > max_pixels_side:
        raise MediaError(
            f"image is {header.width}x{header.height} pixels, over the limit of "
            f"{max_pixels_side}x{max_pixels_side}"
        )
    return ImageInfo(width=header.width, height=header.height, format=header.format)


def probe_video(
    path: str | Path,
    *,
    max_duration_s: float | None = None,
    max_side: int | None = None,
    max_fps: float | None = None,
) -> VideoInfo:
    """Duration, frame rate and size of the first video stream.

    Every limit is checked from the headers, before a frame is decoded: the
    size against `max_side`, the rate against `max_fps`, and the frame count
    (stated, or counted from packets) against `max_duration_s` × `max_fps`.
    """
    max_frames = (
        math.floor(max_duration_s * max_fps)
        if max_duration_s is not None and max_fps is not None
        else None
    )
    with _open(path, "video") as container:
        if not container.streams.video:
            raise MediaError("video has no video stream")
        stream = container.streams.video[0]
        width = int(stream.codec_context.width or 0)
        height = int(stream.codec_context.height or 0)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if width <= 0 or height <= 0 or fps <= 0:
            raise MediaError("video could not be decoded: unknown frame size or frame rate")
        if max_side is not None and (width > max_side or height > max_side):
            raise MediaError(
                f"video is {width}x{height} pixels, over the limit of {max_side}x{max_side}"
            )
        if max_fps is not None and fps > max_fps:
            raise MediaError(f"video is {fps:g} frames per second, over the limit of {max_fps:g}")
        if max_frames is not None and stream.frames > max_frames:
            raise MediaError(_too_many_frames(str(stream.frames), max_frames))
        duration = _stream_duration(container, stream)
        if duration is None:
            duration = _count_video_duration(container, stream, fps, max_frames)
    if max_duration_s is not None and duration > max_duration_s:
        raise MediaError(f"video is {duration:.1f} s long, over the limit of {max_duration_s:g} s")
    return VideoInfo(duration_s=duration, fps=fps, width=width, height=height)


def _too_many_frames(frames: str, max_frames: int) -> str:
    return f"video has {frames} frames, over the limit of {max_frames}"


def _count_video_duration(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    fps: float,
    max_frames: int | None,
) -> float:
    # Demuxing without decoding is enough to count packets (one frame each);
    # the count stops at the cap, so a stream of countless tiny frames ends early.
    packets = 0
    for packet in container.demux(stream):
        if packet.size:
            packets += 1
            if max_frames is not None and packets > max_frames:
                raise MediaError(_too_many_frames(f"more than {max_frames}", max_frames))
    return packets / fps


def probe_output(path: str | Path) -> OutputInfo:
    """Describe a rendered MP4: the frame count is read from the container, not decoded."""
    with _open(path, "video") as container:
        if not container.streams.video:
            raise MediaError("video has no video stream")
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        duration = float(Fraction(container.duration, av.time_base)) if container.duration else 0.0
        return OutputInfo(
            duration_s=duration,
            width=int(video.codec_context.width),
            height=int(video.codec_context.height),
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
            frames=int(video.frames),
        )
