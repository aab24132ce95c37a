"""Synthetic test inputs for the quality checks: speech, a talking-face video, a two-person photo.

Everything is made from ``tests/data/astronaut.jpg`` and numpy, so nothing is
downloaded and every input is reproducible from a seed.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import wave
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.media import Mp4Writer, load_image_bgr
from tests.media_fixtures import portrait_path
from tests.quality.faces import FaceTracker
from tests.quality.metrics import smoothstep

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]

SPEECH_RATE = 16000
# The teeth of the talking-face video's speaker (BGR), when it shows them.
IVORY = (196, 218, 232)
# (F1, F2) in Hz: open "a", mid "e", spread "i", rounded "o" and "u".
VOWELS = ((800, 1200), (500, 1800), (300, 2300), (450, 850), (320, 750))


def speech_signal(
    seconds: float, *, seed: int, head_s: float = 0.0, tail_s: float = 0.0
) -> FloatArray:
    """Mono speech-like audio at ``SPEECH_RATE``: phrases of syllables, pauses, silent ends.

    Unlike a regular syllable train, durations, loudness, vowels and pauses all
    vary, so the loudness envelope is not periodic and a lag search has one clear
    peak. Each syllable is a voiced vowel (harmonics shaped by two formants), some
    with a short fricative onset; phrases are separated by 0.35-0.7 s pauses.
    """
    rng = np.random.default_rng(seed)
    total = round(seconds * SPEECH_RATE)
    start, stop = round(head_s * SPEECH_RATE), total - round(tail_s * SPEECH_RATE)
    out = np.zeros(total, np.float64)
    pos = start
    while pos < stop:
        for _ in range(int(rng.integers(2, 6))):  # syllables in this phrase
            length = int(rng.uniform(0.1, 0.28) * SPEECH_RATE)
            if pos + length > stop:
                break
            out[pos : pos + length] = _syllable(length, rng)
            pos += length + int(rng.uniform(0.03, 0.14) * SPEECH_RATE)
        pos += int(rng.uniform(0.35, 0.7) * SPEECH_RATE)
        if stop - pos < 0.15 * SPEECH_RATE:
            break
    peak = float(np.max(np.abs(out))) or 1.0
    return (0.7 * out / peak).astype(np.float32)


def _syllable(length: int, rng: np.random.Generator) -> FloatArray:
    t = np.arange(length) / SPEECH_RATE
    f0 = rng.uniform(130, 210) * (1.0 + 0.08 * np.linspace(0.5, -0.5, length))
    phase = 2 * np.pi * np.cumsum(f0) / SPEECH_RATE
    f1, f2 = VOWELS[int(rng.integers(len(VOWELS)))]
    voice = np.zeros(length)
    for k in range(1, 24):
        freq = float(np.mean(f0)) * k
        gain = (
            1.0 / k
            + np.exp(-(((freq - f1) / 150) ** 2))
            + 0.6 * np.exp(-(((freq - f2) / 200) ** 2))
        )
        voice += gain * np.sin(k * phase)
    voice /= np.max(np.abs(voice)) + 1e-9
    # Fast attack, slower decay, like a consonant-vowel syllable.
    shape = (
        np.minimum(t / 0.03, 1.0)
        * np.exp(-2.5 * t / t[-1])
        * np.clip(np.sin(np.pi * t / t[-1]), 0, 1) ** 0.3
    )
    syllable = voice * shape * rng.uniform(0.45, 1.0)
    if rng.random() < 0.4:  # a fricative onset ("s", "f"): quiet high-passed noise
        burst = min(length, int(0.05 * SPEECH_RATE))
        noise = rng.normal(0, 0.12, burst)
        syllable[:burst] += noise - np.convolve(noise, np.ones(4) / 4, "same")
    return syllable.astype(np.float32)


def write_wav(path: str | Path, samples: FloatArray, sample_rate: int = SPEECH_RATE) -> Path:
    """16-bit mono PCM WAV."""
    path = Path(path)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return path


def write_speech(
    path: str | Path, seconds: float, *, seed: int, head_s: float = 0.6, tail_s: float = 0.6
) -> Path:
    return write_wav(path, speech_signal(seconds, seed=seed, head_s=head_s, tail_s=tail_s))


def two_person_image(path: str | Path) -> Path:
    """Two head-and-shoulders portraits side by side (the astronaut and her mirror image).

    Mirrored, the right person differs from the left in every pixel, so a mouth
    drawn from the wrong face would show.
    """
    image = load_image_bgr(portrait_path())
    crop = image[0:300, 73:373]
    gap = np.full((300, 40, 3), crop[5:40, 5:40].reshape(-1, 3).mean(axis=0), np.uint8)
    canvas = np.hstack([crop, gap, crop[:, ::-1]])
    if not cv2.imwrite(str(path), canvas):
        raise RuntimeError(f"could not write {path}")
    return Path(path)


@functools.cache
def _cache_dir() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="quality-inputs-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


@functools.cache
def face_video(seconds: float, talk_seed: int | None = 99, *, teeth: bool = False) -> Path:
    """A talking (or, with ``talk_seed=None``, silent and still-mouthed) face video.

    Made once per process (a few seconds of work) and shared by the tests.
    The mouth talks from the first frame to the last, so the silences of a new
    audio fall on an already-moving mouth, which the engine has to close.
    """
    frames = round(seconds * 25)
    sound = speech_signal(seconds, seed=talk_seed or 0)
    if talk_seed is None:
        sound = np.zeros_like(sound)
    path = _cache_dir() / f"face-{seconds:g}-{talk_seed}{'-teeth' if teeth else ''}.mp4"
    return write_face_video(
        path, sound, mouth_openings(sound, frames), teeth=IVORY if teeth else None
    )


def write_face_video(
    path: str | Path,
    sound: FloatArray,
    openings: FloatArray,
    *,
    fps: int = 25,
    size: tuple[int, int] = (640, 480),
    teeth: tuple[int, int, int] | None = None,
) -> Path:
    """A 4:3 video of the portrait with a slow pan and zoom, the mouth opened per frame.

    ``openings`` (0 closed .. 1 open, one per frame) drives a simple mouth
    opener of its own, independent of the engine; ``sound`` (mono, at
    ``SPEECH_RATE``) is the video's sound track. With ``teeth`` (a BGR colour) the open
    mouth shows this person's own teeth and tongue (``_MouthOpener``), else a plain dark gap.
    """
    portrait = load_image_bgr(portrait_path())
    faces = FaceTracker(people=1).faces(portrait)
    if not faces:
        raise RuntimeError("no face in the portrait")
    talker = _MouthOpener(portrait, faces[0], teeth=teeth)
    width, height = size
    frames = openings.size
    with Mp4Writer(
        path, width=width, height=height, fps=fps, audio_rate=SPEECH_RATE, crf=16
    ) as out:
        out.write_audio(sound[np.newaxis, :].astype(np.float32))
        for index in range(frames):
            talking = talker.render(float(openings[index]))
            out.write_bgr(_pan_zoom(talking, index / max(frames - 1, 1), width, height))
    return Path(path)


def mouth_openings(sound: FloatArray, frames: int, fps: int = 25) -> FloatArray:
    """Per-frame opening in [0, 1] that follows ``sound`` with no lag (lip-synced by design)."""
    return _envelope_01(sound, frames, fps)


def _envelope_01(samples: FloatArray, frames: int, fps: int) -> FloatArray:
    hop = SPEECH_RATE / fps
    rms = np.array(
        [
            np.sqrt(np.mean(samples[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12)
            for i in range(frames)
        ]
    )
    level = np.clip((20 * np.log10(rms) + 35) / 25, 0, 1)  # -35 dBFS closed .. -10 dBFS open
    return np.convolve(level, [0.25, 0.5, 0.25], "same").astype(np.float32)


def _pan_zoom(image: UInt8Array, progress: float, width: int, height: int) -> UInt8Array:
    """A 4:3 window that zooms in 12 % and drifts sideways, scaled to ``width`` x ``height``."""
    side = image.shape[1]
    zoom = 1.0 + 0.12 * progress
    window_w = side / zoom
    window_h = window_w * height / width
    cx = side / 2 + 14 * np.sin(2 * np.pi * progress)
    cy = window_h / 2 + 6 * progress
    scale = width / window_w
    matrix = np.array(
        [[scale, 0, width / 2 - cx * scale], [0, scale, height / 2 - cy * scale]], np.float32
    )
    return np.asarray(
        cv2.warpAffine(
            image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        ),
        np.uint8,
    )


def _recolour_teeth(
    image: UInt8Array, points: FloatArray, colour: tuple[int, int, int]
) -> UInt8Array:
    """The portrait with the teeth its rest mouth shows (bright, grey pixels between the
    inner lips) in ``colour``, shaded as they were: one person, one set of teeth."""
    inner = points[[78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]]
    lower = points[[308, 324, 318, 402, 317, 14, 87, 178, 88, 95]]
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.concatenate([inner, lower])).astype(np.int32)], 255)
    pixels = image.astype(np.float32)
    grey = pixels.mean(axis=2)
    teeth = (mask > 0) & (grey > 140) & (pixels.max(axis=2) - pixels.min(axis=2) < 60)
    out = image.copy()
    shade = (grey[teeth] / 255.0)[:, np.newaxis]
    out[teeth] = np.clip(np.array(colour, np.float32) * shade * 1.1, 0, 255).astype(np.uint8)
    return out


class _MouthOpener:
    """A deliberately simple mouth opener for the *source* video (independent of the engine).

    The lower lip and chin slide down by up to a quarter of the mouth width and
    the gap is painted dark; crude, but the face mesh reads it as an open mouth.
    """

    def __init__(
        self, image: UInt8Array, points: FloatArray, *, teeth: tuple[int, int, int] | None = None
    ) -> None:
        self.image = image if teeth is None else _recolour_teeth(image, points, teeth)
        self.teeth = teeth
        left, right = points[61], points[291]
        self.amplitude = 0.25 * float(np.linalg.norm(right - left))
        self.lower = points[[78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]]
        centre_x, half = float((left[0] + right[0]) / 2), float(abs(right[0] - left[0]) / 2)
        lip_y, chin_y = float(points[14][1]), float(points[152][1])
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float32)
        across = np.cos(np.clip((xs - centre_x) / (1.4 * half), -1, 1) * np.pi / 2) ** 2
        below_lip = smoothstep(lip_y - 1.0, lip_y + 1.0, ys)
        above_neck = 1.0 - smoothstep(chin_y, chin_y + 0.6 * (chin_y - lip_y), ys)
        self._weight = (across * below_lip * above_neck).astype(np.float32)
        self._xs, self._ys = xs, ys
        self._profile_half, self._centre_x = half, centre_x

    def render(self, opening: float) -> UInt8Array:
        if opening <= 0.01:
            return self.image.copy()
        shift = opening * self.amplitude
        warped = np.asarray(
            cv2.remap(self.image, self._xs, self._ys - shift * self._weight, cv2.INTER_LINEAR),
            np.uint8,
        )
        x = self.lower[:, 0]
        profile = np.sqrt(np.clip(1 - ((x - self._centre_x) / self._profile_half) ** 2, 0, 1))
        dropped = self.lower + np.stack([np.zeros_like(x), shift * profile], axis=1)
        # Paint only the new gap below the resting lower lip, so any visible teeth stay.
        ring = np.concatenate([self.lower, dropped[::-1]])
        cv2.fillPoly(warped, [np.round(ring * 16).astype(np.int32)], (45, 35, 70), cv2.LINE_AA, 4)
        if self.teeth is not None:
            self._paint_teeth(warped, shift, self.teeth)
        return warped

    def _paint_teeth(self, image: UInt8Array, shift: float, colour: tuple[int, int, int]) -> None:
        """This person's own mouth interior: teeth of ``colour`` along the top of the gap, each
        outlined by a dark seam, and a pink tongue low in the gap (clipped to the gap).

        Coloured and seamed, it is told apart from the engine's painted interior in a render."""
        x = self.lower[:, 0]
        profile = np.sqrt(np.clip(1 - ((x - self._centre_x) / self._profile_half) ** 2, 0, 1))
        top = self.lower[:, 1]
        gap = np.concatenate([self.lower, self.lower + np.stack([0 * x, shift * profile], 1)[::-1]])
        inside = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(inside, [np.round(gap * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        layer = image.copy()
        teeth_h = np.minimum(0.5 * shift, 0.1 * 2 * self._profile_half) * profile
        teeth = np.concatenate([np.stack([x, top - 1], 1), np.stack([x, top + teeth_h], 1)[::-1]])
        cv2.fillPoly(layer, [np.round(teeth * 16).astype(np.int32)], colour, cv2.LINE_AA, 4)
        tongue_h = 0.3 * shift * profile
        bottom = top + shift * profile
        tongue = np.concatenate(
            [np.stack([x, bottom - tongue_h], 1), np.stack([x, bottom + 1], 1)[::-1]]
        )
        cv2.fillPoly(
            layer, [np.round(tongue * 16).astype(np.int32)], (105, 110, 190), cv2.LINE_AA, 4
        )
        step = self._profile_half / 4
        for k in range(-3, 4):
            seam_x = self._centre_x + k * step
            y0 = float(np.interp(seam_x, x, top))
            height = float(np.interp(seam_x, x, teeth_h))
            cv2.line(
                layer,
                (round(seam_x), round(y0)),
                (round(seam_x), round(y0 + height)),
                (70, 90, 110),
                1,
                cv2.LINE_AA,
            )
        alpha = (inside.astype(np.float32) / 255.0)[..., np.newaxis]
        image[:] = np.clip(image * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8)
