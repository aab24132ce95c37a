"""``render_video``: a synthetic talking-head clip (the portrait with its own mouth motion)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.media import MediaError, NoFaceError, probe_output
from inference_service.media.video import VideoReader, ping_pong
from tests.media_fixtures import (
    decode_frames,
    read_frame_stamp,
    write_garbage,
    write_speech_wav,
    write_talking_video,
)

FPS = 25
VIDEO_S, AUDIO_S, HEAD = 2.0, 3.0, 0.8


@dataclass(frozen=True)
class Render:
    result: RenderResult
    path: Path
    frames: list[np.ndarray]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video")


@pytest.fixture(scope="module")
def video(folder: Path) -> Path:
    return write_talking_video(folder / "talking.mp4", VIDEO_S, fps=FPS)


@pytest.fixture(scope="module")
def render(engine: LipsyncEngine, video: Path, folder: Path) -> Render:
    audio = write_speech_wav(folder / "voice.wav", AUDIO_S, silence_head=HEAD)
    out = folder / "out.mp4"
    result = engine.render_video(str(video), str(audio), str(out), height=480, seed=5)
    return Render(result, out, decode_frames(out))


def test_a_short_video_is_extended_to_the_audio_length(render: Render) -> None:
    info = probe_output(render.path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert abs(info.duration_s - AUDIO_S) <= 1 / FPS
    assert render.result.frames == len(render.frames) == round(AUDIO_S * FPS)
    assert render.result.fps == FPS and render.result.seed == 5
    assert (render.result.width, render.result.height) == (480, 480)
    assert render.result.face_frames == render.result.frames
    assert {"decode", "detect", "render", "encode"} <= set(render.result.timings_ms)


def test_the_extension_plays_backward_without_a_jump(render: Render) -> None:
    matched = [read_frame_stamp(frame) for frame in render.frames]
    n = round(VIDEO_S * FPS)
    expected = list(range(n)) + list(range(n - 2, -1, -1))
    assert matched == expected[: len(matched)]
    assert max(abs(a - b) for a, b in itertools.pairwise(matched)) == 1


def test_a_long_video_is_cut_to_the_audio(
    engine: LipsyncEngine, video: Path, tmp_path: Path
) -> None:
    audio = write_speech_wav(tmp_path / "short.wav", 1.0)
    out = tmp_path / "cut.mp4"
    result = engine.render_video(str(video), str(audio), str(out), height=480)
    assert result.frames == FPS and probe_output(out).frames == FPS
    assert abs(probe_output(out).duration_s - 1.0) <= 1 / FPS


def test_the_original_mouth_motion_is_suppressed_in_silence(
    engine: LipsyncEngine, render: Render, video: Path
) -> None:
    from inference_service.engine.tracker import FaceTracker

    def gaps(frames: list[np.ndarray]) -> np.ndarray:
        with engine.face_models() as models:
            tracker = FaceTracker(models, FPS)
            points = [tracker.update(frame) for frame in frames]
        return np.array([np.linalg.norm(p[14] - p[13]) for p in points if p is not None])

    silent = round(HEAD * FPS) - 2
    source_gaps = gaps(decode_frames(video)[:silent])
    output_gaps = gaps(render.frames[:silent])
    # The source mouth keeps opening and closing; the output's stays shut while there is silence.
    assert output_gaps.mean() < 0.5 * source_gaps.mean()
    assert output_gaps.std() < source_gaps.std()


def test_frames_without_a_face_pass_through(engine: LipsyncEngine, tmp_path: Path) -> None:
    video = write_talking_video(tmp_path / "half.mp4", 1.6, faceless_from=0.8)
    audio = write_speech_wav(tmp_path / "v.wav", 1.6)
    out = tmp_path / "out.mp4"
    result = engine.render_video(str(video), str(audio), str(out), height=480)
    assert 0 < result.face_frames <= 21
    last, source_last = decode_frames(out)[-1], decode_frames(video)[-1]
    assert np.abs(last.astype(int) - source_last).mean() < 2


def test_a_video_without_any_face_fails_clearly(engine: LipsyncEngine, tmp_path: Path) -> None:
    from tests.media_fixtures import write_mp4

    video = write_mp4(tmp_path / "pattern.mp4", 0.4, with_audio=False)
    audio = write_speech_wav(tmp_path / "v.wav", 0.4)
    out = tmp_path / "out.mp4"
    with pytest.raises(NoFaceError, match="no face found in the video"):
        engine.render_video(str(video), str(audio), str(out), height=480)
    assert not out.exists()


def test_an_audio_file_as_video_has_no_video_stream(engine: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.5)
    with pytest.raises(MediaError, match=r"^video has no video stream$"):
        engine.render_video(str(audio), str(audio), str(tmp_path / "o.mp4"), height=480)


def test_garbage_video_cannot_be_decoded(engine: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.5)
    garbage = write_garbage(tmp_path / "v.mp4")
    with pytest.raises(MediaError, match=r"^video could not be decoded: "):
        engine.render_video(str(garbage), str(audio), str(tmp_path / "o.mp4"), height=480)


def test_bounded_ping_pong_replays_the_same_frames_as_the_cache(video: Path) -> None:
    reader = VideoReader(video, 240)
    frame_bytes = reader.width * reader.height * 3
    cached = list(ping_pong(reader, 130, cache_bytes=1 << 30))
    # A budget of 7 frames: backward passes re-decode in chunks after seeking.
    bounded = list(ping_pong(reader, 130, cache_bytes=7 * frame_bytes))
    assert len(cached) == len(bounded) == 130
    assert all(np.array_equal(a, b) for a, b in zip(cached, bounded, strict=True))
    stamps = [read_frame_stamp(frame, 0.5) for frame in bounded]
    assert stamps[:52] == [*range(50), 48, 47] and stamps[98:101] == [0, 1, 2]


def test_sixty_fps_sources_are_capped_at_thirty(tmp_path: Path) -> None:
    from tests.media_fixtures import write_mp4

    video = write_mp4(tmp_path / "fast.mp4", 1.0, fps=60, with_audio=False)
    reader = VideoReader(video, 240)
    assert reader.fps == 30 and reader.source_fps == 60
    assert len(list(reader.frames())) == 30
    assert (reader.width, reader.height) == (320, 240)


def test_a_face_too_small_in_every_frame_says_the_minimum(video: Path, tmp_path: Path) -> None:
    strict = LipsyncEngine(min_face_px=400)  # the clip's face is ~150 px
    audio = write_speech_wav(tmp_path / "v.wav", 0.3)
    out = tmp_path / "o.mp4"
    with pytest.raises(MediaError, match=r"the face in the video is \d+ px .* minimum of 400 px"):
        strict.render_video(str(video), str(audio), str(out), height=480)
    assert not out.exists()
