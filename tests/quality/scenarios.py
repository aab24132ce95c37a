"""Render each engine mode on the synthetic inputs and measure the output.

Shared by the quality tests (480p, short clips) and ``tests.quality_report``
(480p and 720p). ``engine_supports`` tells whether a mode exists yet, so
callers can skip what the engine does not implement.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inference_service.engine import LipsyncEngine
from inference_service.media import (
    Mp4Writer,
    even_size,
    load_audio_mono,
    load_image_bgr,
    probe_output,
)
from inference_service.media.encode import DEFAULT_CRF, DEFAULT_PRESET
from tests.media_fixtures import portrait_path
from tests.quality import inputs
from tests.quality.faces import FaceTracker, face_box, inter_ocular, mouth_opening
from tests.quality.metrics import (
    Closedness,
    Flicker,
    FlickerMeter,
    SyncResult,
    active_frames,
    closedness,
    frame_envelope_db,
    iter_frames,
    lag_correlation,
    luma,
    mouth_jaw_region,
    pause_frames,
    psnr,
    psnr_luma,
    video_fps,
)

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

RATE = inputs.SPEECH_RATE
STRIP_FRAMES = 8
ORDERS = ("left_right", "right_left", "meanwhile")
Box = tuple[int, int, int, int]


@dataclass
class PersonQuality:
    name: str
    sync: SyncResult
    closed: Closedness
    opening: FloatArray  # per frame, NaN where the face was not found
    envelope: FloatArray  # dB per frame of this person's own audio, as placed in the output
    # Correlation with audio that must NOT drive this mouth: the other person's, or the
    # source video's original sound track.
    cross_label: str | None = None
    cross: SyncResult | None = None
    audio_offset_s: float = 0.0


@dataclass
class ModeQuality:
    mode: str
    height: int
    width: int
    fps: float
    frames: int
    render_s: float
    idle_motion: bool | None
    people: list[PersonQuality]
    faces_found: float  # fraction of (frame, person) slots where the face was found
    psnr_outside_min_db: float | None = None
    psnr_outside_mean_db: float | None = None
    psnr_codec_only_db: float | None = None  # the input through the encoder alone (report)
    flicker: Flicker | None = None
    samples: list[tuple[int, UInt8Array]] = field(default_factory=list, repr=False)
    boxes: list[list[Box | None]] = field(default_factory=list, repr=False)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    def person(self, name: str) -> PersonQuality:
        return next(person for person in self.people if person.name == name)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no frames, no per-frame series)."""
        people = []
        for person in self.people:
            entry: dict[str, Any] = {
                "name": person.name,
                "sync_best_r": person.sync.best_r,
                "sync_best_lag_frames": person.sync.best_lag,
                "sync_r_by_lag": {str(lag): r for lag, r in person.sync.r_by_lag.items()},
                "closed": asdict(person.closed),
                "audio_offset_s": round(person.audio_offset_s, 3),
            }
            if person.cross is not None:
                entry[f"cross_best_r_{person.cross_label}"] = person.cross.best_r
            people.append(entry)
        flicker = None
        if self.flicker is not None:
            flicker = {**asdict(self.flicker), "excess": round(self.flicker.excess, 3)}
        return {
            "mode": self.mode,
            "height": self.height,
            "width": self.width,
            "fps": round(self.fps, 3),
            "frames": self.frames,
            "duration_s": round(self.duration_s, 3),
            "render_s": round(self.render_s, 3),
            "output_s_per_wall_s": round(self.duration_s / max(self.render_s, 1e-9), 2),
            "idle_motion": self.idle_motion,
            "faces_found": round(self.faces_found, 3),
            "psnr_outside_min_db": _round(self.psnr_outside_min_db),
            "psnr_outside_mean_db": _round(self.psnr_outside_mean_db),
            "psnr_codec_only_db": _round(self.psnr_codec_only_db),
            "flicker": flicker,
            "people": people,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def engine_supports(engine: LipsyncEngine, method: str, *params: str) -> bool:
    """True when ``engine.<method>`` exists and takes every keyword in ``params``."""
    func = getattr(engine, method, None)
    if func is None:
        return False
    accepted = inspect.signature(func).parameters
    return all(param in accepted for param in params)


# --- references -------------------------------------------------------------------------------


def scaled_reference(image: UInt8Array, height: int) -> UInt8Array:
    """The input at the output size, resampled as well as it can be (area down, cubic up).

    This is the ideal the output is compared with; an engine that resamples
    worse (or shifts the image) loses PSNR for it, as it should.
    """
    width, height = even_size(image.shape[1] * height / image.shape[0], height)
    method = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(image, (width, height), interpolation=method), np.uint8)


def codec_only_psnr(
    reference: UInt8Array, outside: BoolArray, work: Path, frames: int, *, crf: int, preset: str
) -> float:
    """PSNR outside the region of the still input run through x264 alone: an engine that
    changed nothing would score this. As many frames as the output, because x264's
    macroblock-tree rate control spends more bits on an I-frame that many frames reuse."""
    path = work / "codec-only.mp4"
    height, width = reference.shape[:2]
    with Mp4Writer(path, width=width, height=height, crf=crf, preset=preset) as writer:
        writer.write_audio(np.zeros((1, 4800), np.float32))
        for _ in range(max(frames, 1)):
            writer.write_bgr(reference)
    return min(psnr(frame, reference, outside) for frame in iter_frames(path))


def _codec_ceiling(
    engine: LipsyncEngine, reference: UInt8Array, outside: BoolArray, work: Path, frames: int
) -> float:
    crf = int(getattr(engine, "crf", DEFAULT_CRF))
    preset = str(getattr(engine, "preset", DEFAULT_PRESET))
    return codec_only_psnr(reference, outside, work, frames, crf=crf, preset=preset)


def rest_landmarks(image: UInt8Array, people: int) -> list[FloatArray | None]:
    """Landmarks of the input's faces, measured exactly as output frames are (tracked)."""
    tracker = FaceTracker(people)
    tracker.track(image)
    return tracker.track(image)


def audio_offset(track: FloatArray, voice: FloatArray) -> int:
    """Where ``voice`` starts inside the output's ``track`` (samples), by cross-correlation."""
    size = 1 << math.ceil(math.log2(track.size + voice.size))
    spectrum = np.fft.rfft(track, size) * np.conj(np.fft.rfft(voice, size))
    correlation = np.fft.irfft(spectrum, size)[: max(1, track.size - voice.size // 2)]
    return int(np.argmax(correlation))


def placed(voice: FloatArray, offset: int, length: int) -> FloatArray:
    """``voice`` starting at sample ``offset`` of a silent track of ``length`` samples."""
    out = np.zeros(length, np.float32)
    start, stop = max(0, offset), min(length, offset + voice.size)
    if stop > start:
        out[start:stop] = voice[start - offset : stop - offset]
    return out


# --- the measurement loop ---------------------------------------------------------------------


@dataclass
class Measured:
    slots: list[list[FloatArray | None]]
    psnrs: list[float]
    flicker: Flicker | None
    samples: list[tuple[int, UInt8Array]]
    boxes: list[list[Box | None]]
    width: int
    height: int


def measure_frames(
    frames: Iterator[UInt8Array],
    total: int,
    people: int,
    *,
    still_reference: UInt8Array | None = None,
    still_regions: BoolArray | None = None,
    moving_reference: Iterator[UInt8Array] | None = None,
) -> Measured:
    """One pass over output frames: landmarks per person, PSNR outside and flicker at the region.

    A still reference (image modes) comes with its mouth/jaw region; a moving one
    (video mode, frame t of the source for output frame t) is tracked here and its
    region follows the source face. Without a reference only landmarks are taken.
    """
    wanted = set(np.linspace(0, max(total - 1, 0), STRIP_FRAMES).round().astype(int).tolist())
    tracker = FaceTracker(people)
    source_tracker = FaceTracker(people) if moving_reference is not None else None
    slots: list[list[FloatArray | None]] = []
    psnrs: list[float] = []
    meter: FlickerMeter | None = None
    samples: list[tuple[int, UInt8Array]] = []
    boxes: list[list[Box | None]] = []
    width = height = 0
    still_luma = luma(still_reference) if still_reference is not None else None
    outside = ~still_regions if still_regions is not None else None
    for index, frame in enumerate(frames):
        height, width = frame.shape[:2]
        faces = tracker.track(frame)
        slots.append(faces)
        reference, regions = still_reference, still_regions
        if moving_reference is not None and source_tracker is not None:
            source = next(moving_reference, None)
            reference = None if source is None else _fit(source, width, height)
            source_faces = source_tracker.track(reference) if reference is not None else []
            known = [points for points in source_faces if points is not None]
            regions = _union([mouth_jaw_region(p, frame.shape) for p in known]) if known else None
        if reference is not None and regions is not None:
            if meter is None:
                known_faces = [p for p in faces if p is not None]
                iod = inter_ocular(known_faces[0]) if known_faces else height / 8
                # Band ~0.1 eye distances wide (5-6 px at 480p): wider than any seam.
                meter = FlickerMeter(max(2, round(0.1 * iod)), max(1.0, 0.03 * iod))
            reference_luma = still_luma if still_luma is not None else luma(reference)
            frame_luma = luma(frame)
            meter.add_luma(frame_luma, reference_luma, regions)
            if still_regions is not None:
                psnrs.append(psnr_luma(frame_luma, reference_luma, outside))
        elif meter is not None:
            meter.skip()
        if index in wanted:
            samples.append((index, frame.copy()))
            boxes.append([face_box(p) if p is not None else None for p in faces])
    flicker = meter.result() if meter is not None else None
    return Measured(slots, psnrs, flicker, samples, boxes, width, height)


def _fit(frame: UInt8Array, width: int, height: int) -> UInt8Array:
    if frame.shape[:2] == (height, width):
        return frame
    method = cv2.INTER_AREA if frame.shape[1] > width else cv2.INTER_CUBIC
    return np.asarray(cv2.resize(frame, (width, height), interpolation=method), np.uint8)


def _union(masks: list[BoolArray]) -> BoolArray:
    out = masks[0].copy()
    for mask in masks[1:]:
        out |= mask
    return out


def person_quality(
    name: str,
    opening: FloatArray,
    voice: FloatArray,
    fps: float,
    rest: float,
    *,
    cross_label: str | None = None,
    cross_voice: FloatArray | None = None,
    offset_s: float = 0.0,
) -> PersonQuality:
    """Sync and closed-in-pauses figures of one face against its own audio (at ``RATE``)."""
    envelope = frame_envelope_db(voice, RATE, fps, opening.size)
    active = active_frames(envelope)
    cross = None
    if cross_voice is not None:
        cross = lag_correlation(opening, frame_envelope_db(cross_voice, RATE, fps, opening.size))
    return PersonQuality(
        name=name,
        sync=lag_correlation(opening, envelope),
        closed=closedness(opening, rest, active, pause_frames(active, fps)),
        opening=opening,
        envelope=envelope,
        cross_label=cross_label,
        cross=cross,
        audio_offset_s=offset_s,
    )


def openings(slots: list[list[FloatArray | None]], person: int) -> FloatArray:
    return np.array([mouth_opening(frame[person]) for frame in slots], np.float32)


def _faces_found(slots: list[list[FloatArray | None]]) -> float:
    cells = [points is not None for frame in slots for points in frame]
    return sum(cells) / max(len(cells), 1)


def _count(path: Path) -> int:
    return probe_output(path).frames


def _has_idle_motion(engine: LipsyncEngine, method: str, kwargs: dict[str, Any]) -> bool:
    """Whether the render had idle motion: the engine's default (on) unless switched off."""
    return engine_supports(engine, method, "idle_motion") and kwargs.get("idle_motion") is not False


def _render_kwargs(engine: LipsyncEngine, method: str, **kwargs: Any) -> dict[str, Any]:
    """Drop ``idle_motion`` when the engine does not take it (it then has no idle motion)."""
    if kwargs.get("idle_motion") is None or not engine_supports(engine, method, "idle_motion"):
        kwargs.pop("idle_motion", None)
    return kwargs


# --- the three modes --------------------------------------------------------------------------


def run_image(
    engine: LipsyncEngine,
    work: Path,
    height: int,
    *,
    idle_motion: bool | None = None,
    seconds: float = 5.0,
    seed: int = 11,
) -> ModeQuality:
    """lipsync-image on the astronaut portrait: speech with pauses, framed by silence."""
    work.mkdir(parents=True, exist_ok=True)
    audio = inputs.write_speech(work / f"image-{seed}.wav", seconds, seed=seed, tail_s=0.8)
    out = work / f"image-{height}-{idle_motion}.mp4"
    kwargs = _render_kwargs(engine, "render_image", height=height, seed=1, idle_motion=idle_motion)
    started = time.perf_counter()
    engine.render_image(str(portrait_path()), str(audio), str(out), **kwargs)
    render_s = time.perf_counter() - started

    reference = scaled_reference(load_image_bgr(portrait_path()), height)
    rest = rest_landmarks(reference, 1)[0]
    if rest is None:
        raise RuntimeError("no face in the reference portrait")
    region = mouth_jaw_region(rest, reference.shape)
    # Stability is measured against the input only without idle motion (the head sways).
    still = not _has_idle_motion(engine, "render_image", kwargs)
    measured = measure_frames(
        iter_frames(out),
        _count(out),
        1,
        still_reference=reference if still else None,
        still_regions=region if still else None,
    )
    fps = video_fps(out)
    track = load_audio_mono(out, RATE)  # what the viewer hears, as muxed
    person = person_quality("face", openings(measured.slots, 0), track, fps, mouth_opening(rest))
    quality = _mode("image", height, fps, render_s, not still, [person], measured)
    if still:
        quality.psnr_codec_only_db = _codec_ceiling(
            engine, reference, ~region, work, quality.frames
        )
    return quality


def run_video(
    engine: LipsyncEngine,
    work: Path,
    height: int,
    *,
    seconds: float = 4.0,
    seed: int = 12,
) -> ModeQuality:
    """lipsync-video on a panning, zooming, already-talking portrait video longer than the audio
    (its speaker shows their own teeth, which the new mouth reuses)."""
    work.mkdir(parents=True, exist_ok=True)
    source = inputs.face_video(seconds + 1.0, talk_seed=99, teeth=True)
    audio = inputs.write_speech(work / f"video-{seed}.wav", seconds, seed=seed, tail_s=0.8)
    out = work / f"video-{height}.mp4"
    started = time.perf_counter()
    engine.render_video(str(source), str(audio), str(out), height=height, seed=1)  # type: ignore[attr-defined]
    render_s = time.perf_counter() - started

    # Output frame t is source frame t: the source is longer than the audio and 25 fps.
    measured = measure_frames(
        iter_frames(out), _count(out), 1, moving_reference=iter_frames(source)
    )
    fps = video_fps(out)
    portrait = scaled_reference(load_image_bgr(portrait_path()), height)
    person = person_quality(
        "face",
        openings(measured.slots, 0),
        load_audio_mono(out, RATE),
        fps,
        mouth_opening(rest_landmarks(portrait, 1)[0]),
        cross_label="original_audio",
        cross_voice=load_audio_mono(source, RATE),
    )
    return _mode("video", height, fps, render_s, None, [person], measured)


def run_multi(
    engine: LipsyncEngine,
    work: Path,
    height: int,
    order: str,
    *,
    idle_motion: bool | None = None,
    seconds: tuple[float, float] = (3.0, 3.4),
    seeds: tuple[int, int] = (21, 22),
) -> ModeQuality:
    """lipsync-image-multi: two people, two different voices, in the given ``order``."""
    work.mkdir(parents=True, exist_ok=True)
    image = inputs.two_person_image(work / "two.png")
    paths = [
        inputs.write_speech(work / f"multi-{side}.wav", length, seed=seed, head_s=0.3, tail_s=0.4)
        for side, length, seed in zip(("left", "right"), seconds, seeds, strict=True)
    ]
    out = work / f"multi-{order}-{height}-{idle_motion}.mp4"
    kwargs = _render_kwargs(
        engine, "render_multi", order=order, height=height, seed=1, idle_motion=idle_motion
    )
    started = time.perf_counter()
    engine.render_multi(str(image), str(paths[0]), str(paths[1]), str(out), **kwargs)  # type: ignore[attr-defined]
    render_s = time.perf_counter() - started

    reference = scaled_reference(load_image_bgr(image), height)
    rest = rest_landmarks(reference, 2)
    if any(points is None for points in rest):
        raise RuntimeError("the two-person reference image does not show two faces")
    regions = _union([mouth_jaw_region(p, reference.shape) for p in rest if p is not None])
    still = not _has_idle_motion(engine, "render_multi", kwargs)
    measured = measure_frames(
        iter_frames(out),
        _count(out),
        2,
        still_reference=reference if still else None,
        still_regions=regions if still else None,
    )
    fps = video_fps(out)
    # Each person's voice where the engine put it in the sound track (left_right: the right
    # voice starts when the left one ends), found by cross-correlation with the output's audio.
    track = load_audio_mono(out, RATE)
    voices = [load_audio_mono(path, RATE) for path in paths]
    offsets = [audio_offset(track, voice) for voice in voices]
    tracks = [placed(v, o, track.size) for v, o in zip(voices, offsets, strict=True)]
    people = [
        person_quality(
            name,
            openings(measured.slots, index),
            tracks[index],
            fps,
            mouth_opening(rest[index]),
            cross_label="other_person",
            cross_voice=tracks[1 - index],
            offset_s=offsets[index] / RATE,
        )
        for index, name in enumerate(("left", "right"))
    ]
    quality = _mode(f"multi-{order}", height, fps, render_s, not still, people, measured)
    if still:
        quality.psnr_codec_only_db = _codec_ceiling(
            engine, reference, ~regions, work, quality.frames
        )
    return quality


def _mode(
    mode: str,
    height: int,
    fps: float,
    render_s: float,
    idle_motion: bool | None,
    people: list[PersonQuality],
    measured: Measured,
) -> ModeQuality:
    return ModeQuality(
        mode=mode,
        height=measured.height or height,
        width=measured.width,
        fps=fps,
        frames=len(measured.slots),
        render_s=render_s,
        idle_motion=idle_motion,
        people=people,
        faces_found=_faces_found(measured.slots),
        psnr_outside_min_db=min(measured.psnrs) if measured.psnrs else None,
        psnr_outside_mean_db=float(np.mean(measured.psnrs)) if measured.psnrs else None,
        flicker=measured.flicker,
        samples=measured.samples,
        boxes=measured.boxes,
    )
