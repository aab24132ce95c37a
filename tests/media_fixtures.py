"""Generate real media files for tests (no network, no binary blobs except tests/data).

Shared by the inference unit tests and the integration tests: every function
writes a file that FFmpeg/OpenCV genuinely decode (or, for ``write_garbage``,
genuinely fail to decode) and returns its path.
"""

from __future__ import annotations

import struct
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"


def speech_like_signal(seconds: float, sample_rate: int = 16000, *, seed: int = 1) -> np.ndarray:
    """A voiced, syllable-modulated signal in [-1, 1] that an envelope follower sees as speech.

    A 140 Hz glottal-like harmonic series (with formant-ish emphasis near 700
    and 1200 Hz) is gated into ~4 syllables per second with short pauses, the
    rhythm of conversational speech.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    f0 = 140.0 * (1.0 + 0.05 * np.sin(2 * np.pi * 0.7 * t))  # gentle intonation
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voice = np.zeros(n)
    for k in range(1, 20):
        freq = 140.0 * k
        weight = (
            1.0 / k
            + 0.8 * np.exp(-(((freq - 700) / 200) ** 2))
            + 0.5 * np.exp(-(((freq - 1200) / 250) ** 2))
        )
        voice += weight * np.sin(k * phase)
    voice /= np.max(np.abs(voice)) + 1e-9
    # Syllable envelope: raised-cosine bumps of 120-220 ms separated by 40-120 ms gaps.
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.22) * sample_rate)
        gap = int(rng.uniform(0.04, 0.12) * sample_rate)
        bump = np.sin(np.linspace(0, np.pi, length)) ** 2 * rng.uniform(0.5, 1.0)
        end = min(n, pos + length)
        envelope[pos:end] = bump[: end - pos]
        pos = end + gap
    noise = rng.normal(0, 0.01, n)
    return (0.6 * voice * envelope + noise * envelope).astype(np.float32)


def write_speech_wav(
    path: str | Path,
    seconds: float,
    sample_rate: int = 16000,
    silence_tail: float = 0.0,
    *,
    silence_head: float = 0.0,
    channels: int = 1,
) -> Path:
    """Write a 16-bit PCM WAV: ``silence_head`` s of silence, speech, ``silence_tail`` s of silence.

    ``seconds`` is the total length, silences included.
    """
    path = Path(path)
    total = round(seconds * sample_rate)
    head = round(silence_head * sample_rate)
    tail = round(silence_tail * sample_rate)
    speech_n = max(0, total - head - tail)
    signal = np.zeros(total, dtype=np.float32)
    signal[head : head + speech_n] = speech_like_signal(speech_n / sample_rate, sample_rate)[
        :speech_n
    ]
    pcm = (np.clip(signal, -1, 1) * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return path


def write_garbage(path: str | Path, size: int = 4096) -> Path:
    """Bytes that no decoder accepts (deterministic, not a valid header of anything)."""
    path = Path(path)
    data = np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(b"not media\x00" + data)
    return path


def portrait_path() -> Path:
    """A real frontal portrait: NASA's photo of astronaut Eileen Collins (public domain).

    Taken from scikit-image's ``data/astronaut.png`` and stored as a 512x512 JPEG.
    """
    return DATA_DIR / "astronaut.jpg"


def write_no_face_image(path: str | Path, width: int = 640, height: int = 480) -> Path:
    """A colourful gradient with smooth noise: image-like, decodable, and faceless."""
    path = Path(path)
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [255 * x / width, 255 * y / height, 128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0)],
        axis=-1,
    )
    noise = cv2.GaussianBlur(rng.normal(0, 40, (height, width, 3)).astype(np.float32), (0, 0), 6)
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), image):
        raise RuntimeError(f"could not write {path}")
    return path


def write_png_header_only(path: str | Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression-bomb stand-in)."""
    path = Path(path)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def write_mp4(
    path: str | Path,
    seconds: float,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    with_audio: bool = True,
    sample_rate: int = 48000,
) -> Path:
    """A short H.264 (+ AAC speech-like audio) MP4 with a moving pattern, written with PyAV."""
    path = Path(path)
    frames = max(1, round(seconds * fps))
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream("aac", rate=sample_rate, layout="mono") if with_audio else None
        samples = speech_like_signal(frames / fps, sample_rate) if with_audio else None
        y, x = np.mgrid[0:height, 0:width]
        per_frame = sample_rate // fps
        for i in range(frames):
            image = np.stack(
                [(x + 4 * i) % 256, (y + 2 * i) % 256, np.full_like(x, (9 * i) % 256)], axis=-1
            ).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
            if audio is not None and samples is not None:
                chunk = samples[i * per_frame : (i + 1) * per_frame]
                if chunk.size:
                    audio_frame = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(chunk[None, :]), format="fltp", layout="mono"
                    )
                    audio_frame.sample_rate = sample_rate
                    audio_frame.pts = i * per_frame
                    container.mux(audio.encode(audio_frame))
        container.mux(video.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))
    return path


def write_two_face_image(path: str | Path, gap: int = 64) -> Path:
    """Two people side by side: the portrait and its mirror image, ``gap`` px apart (JPEG/PNG)."""
    path = Path(path)
    portrait = cv2.imread(str(portrait_path()), cv2.IMREAD_COLOR)
    spacer = np.full((portrait.shape[0], gap, 3), 40, np.uint8)
    image = np.concatenate([portrait, spacer, portrait[:, ::-1]], axis=1)
    if not cv2.imwrite(str(path), image):
        raise RuntimeError(f"could not write {path}")
    return path


def write_talking_video(
    path: str | Path,
    seconds: float,
    *,
    fps: int = 25,
    mouth_hz: float = 3.0,
    sway_px: float = 6.0,
    faceless_from: float | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """An H.264 MP4 of the portrait talking on its own: the mouth opens and closes at
    ``mouth_hz`` (the original speech an engine must suppress) while the head drifts by up
    to ``sway_px``. From ``faceless_from`` seconds on, frames show a plain wall instead.
    Each frame carries its index as a stamp (``read_frame_stamp``) in the top-left corner.
    ``size`` (width, height) places the portrait, scaled to the height, in the middle of a
    wider frame (e.g. 1280x720); by default the frame is the 480x480 portrait.
    No audio track (the engine replaces it anyway).
    """
    from inference_service.engine import LipsyncEngine, scale_to_height
    from inference_service.engine.mouth_rig import MouthRig

    path = Path(path)
    prepared = LipsyncEngine().prepare_face(portrait_path())
    image, points = scale_to_height(
        prepared.image, prepared.landmarks.points, size[1] if size else 480
    )
    if size is not None:
        pad = (size[0] - image.shape[1]) // 2
        image = cv2.copyMakeBorder(
            image, 0, 0, pad, size[0] - image.shape[1] - pad, cv2.BORDER_REFLECT
        )
        points = points + np.array([pad, 0], np.float32)
    rig = MouthRig(image, points)
    height, width = image.shape[:2]
    frames = max(1, round(seconds * fps))
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            t = i / fps
            canvas = image.copy()
            rig.render_into(canvas, 0.5 - 0.5 * np.cos(2 * np.pi * mouth_hz * t))
            shift = np.float32(
                [[1, 0, sway_px * np.sin(1.3 * t)], [0, 1, sway_px * np.sin(0.9 * t)]]
            )
            canvas = cv2.warpAffine(canvas, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
            if faceless_from is not None and t >= faceless_from:
                canvas = np.full_like(canvas, 120)
            _stamp(canvas, i)
            frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    return path


_STAMP_BITS, _STAMP_BLOCK = 10, 12


def _stamp(image: np.ndarray, index: int) -> None:
    for bit in range(_STAMP_BITS):
        value = 255 if index >> bit & 1 else 0
        image[:_STAMP_BLOCK, bit * _STAMP_BLOCK : (bit + 1) * _STAMP_BLOCK] = value


def read_frame_stamp(image: np.ndarray, scale: float = 1.0) -> int:
    """The frame index ``write_talking_video`` stamped, read back from a (scaled) frame."""
    block = _STAMP_BLOCK * scale
    row = round(block / 2)
    bits = [
        float(image[row, round((bit + 0.5) * block)].mean()) > 128 for bit in range(_STAMP_BITS)
    ]
    return sum(1 << bit for bit, on in enumerate(bits) if on)


def decode_frames(path: str | Path) -> list[np.ndarray]:
    """Every video frame of ``path`` as BGR arrays (short clips only: all in memory)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
