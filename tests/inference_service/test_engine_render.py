"""End-to-end ``render_image``: real portrait, speech-like audio, decoded MP4 checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_service.engine import LipsyncEngine, RenderResult, resolve_seed, scale_to_height
from inference_service.engine.__main__ import main as cli_main
from inference_service.engine.mouth_rig import MouthRig
from inference_service.media import MediaError, load_image_bgr, probe_output
from tests.media_fixtures import (
    decode_frames,
    portrait_path,
    write_garbage,
    write_speech_wav,
    write_talking_video,
    write_two_face_image,
)

SECONDS, HEAD, TAIL = 3.0, 0.6, 0.8
FPS = 25


@dataclass(frozen=True)
class Render:
    result: RenderResult
    path: Path
    frames: list[np.ndarray]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    return write_speech_wav(folder / "voice.wav", SECONDS, silence_head=HEAD, silence_tail=TAIL)


@pytest.fixture(scope="module")
def render(engine: LipsyncEngine, speech: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    out = tmp_path_factory.mktemp("render") / "out.mp4"
    result = engine.render_image(
        str(portrait_path()), str(speech), str(out), height=480, seed=7, idle_motion=False
    )
    return Render(result, out, decode_frames(out))


def test_render_writes_an_mp4_as_long_as_the_audio(render: Render) -> None:
    info = probe_output(render.path)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.height == 480 and info.width % 2 == 0
    assert abs(info.duration_s - SECONDS) <= 1 / FPS
    assert render.result.frames == len(render.frames) == round(SECONDS * FPS)
    assert render.result.duration_s == pytest.approx(SECONDS, abs=1e-3)
    assert render.result.seed == 7
    assert {"decode", "detect", "render", "encode"} <= set(render.result.timings_ms)
    assert all(isinstance(ms, int) for ms in render.result.timings_ms.values())


def _mouth_box(height: int) -> tuple[slice, slice]:
    prepared = LipsyncEngine().prepare_face(portrait_path())
    frame, points = scale_to_height(prepared.image, prepared.landmarks.points, height)
    return MouthRig(frame, points).box.slices


def test_mouth_moves_with_speech_and_rests_in_silence(render: Render) -> None:
    rows, cols = _mouth_box(480)
    reference = render.frames[0][rows, cols].astype(np.float32)
    change = np.array(
        [np.abs(frame[rows, cols].astype(np.float32) - reference).mean() for frame in render.frames]
    )
    # Skip a frame either side of the boundaries: the mouth leads speech and closes on release.
    silent = np.concatenate([change[: round(HEAD * FPS) - 2], change[-round(TAIL * FPS) + 8 :]])
    loud = change[round(HEAD * FPS) + 2 : -round(TAIL * FPS) - 2]
    assert silent.max() < 3  # encoder noise only (I- vs P-frame quantisation)
    assert np.percentile(loud, 75) > 3 * max(silent.max(), 1.0)
    assert loud.max() > 8


def test_pixels_away_from_the_mouth_match_the_source(render: Render) -> None:
    source = load_image_bgr(portrait_path())
    scaled, _ = scale_to_height(source, np.zeros((468, 2), np.float32), 480)
    top = scaled.shape[0] * 3 // 10
    loudest = max(render.frames, key=lambda frame: float(np.abs(frame - render.frames[0]).sum()))
    for frame in (render.frames[0], loudest):
        assert cv2.PSNR(frame[:top], scaled[:top]) > 30


def test_same_seed_gives_identical_frames(
    engine: LipsyncEngine,
    speech: Path,
    render: Render,
    tmp_path: Path,
    encoded: dict[str, list[str]],
) -> None:
    for name in ("again.mp4", "and-again.mp4"):
        engine.render_image(
            str(portrait_path()), str(speech), str(tmp_path / name), height=480, seed=7,
            idle_motion=False,
        )  # fmt: skip
    # The frames given to the encoder (tests/inference_service/conftest.py `encoded`).
    assert len(encoded["again.mp4"]) == len(render.frames)
    assert encoded["again.mp4"] == encoded["and-again.mp4"]


def test_720p_render_has_720_lines(engine: LipsyncEngine, tmp_path: Path) -> None:
    audio = write_speech_wav(tmp_path / "short.wav", 1.0)
    out = tmp_path / "hd.mp4"
    result = engine.render_image(str(portrait_path()), str(audio), str(out), height=720)
    info = probe_output(out)
    assert (info.height, result.height) == (720, 720) and info.width % 2 == 0
    assert 0 <= result.seed < 2**31  # random when not given


def test_undecodable_audio_fails_with_a_user_message_and_no_output(
    engine: LipsyncEngine, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="audio could not be decoded"):
        engine.render_image(
            str(portrait_path()), str(write_garbage(tmp_path / "a.mp3")), str(out), height=480
        )
    assert not out.exists()


def test_unsupported_height_is_a_programming_error(engine: LipsyncEngine, speech: Path) -> None:
    with pytest.raises(ValueError, match="height"):
        engine.render_image(str(portrait_path()), str(speech), "/nonexistent/x.mp4", height=1080)


def test_resolve_seed() -> None:
    assert resolve_seed(42) == 42
    assert 0 <= resolve_seed(None) < 2**31
    assert 0 <= resolve_seed(-1) < 2**31


def test_cli_prints_the_render_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = write_speech_wav(tmp_path / "v.wav", 0.6)
    out = tmp_path / "cli.mp4"
    code = cli_main(
        ["--image", str(portrait_path()), "--audio", str(audio), "--out", str(out), "--seed", "3"]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seed"] == 3 and printed["frames"] == 15 and printed["height"] == 480
    assert out.is_file()


def test_cli_reports_user_errors_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = write_garbage(tmp_path / "face.png")
    audio = write_speech_wav(tmp_path / "v.wav", 0.4)
    code = cli_main(["--image", str(garbage), "--audio", str(audio), "--out", str(tmp_path / "o")])
    assert code == 2
    assert json.loads(capsys.readouterr().err)["error"].startswith("image could not be decoded")


def test_cli_renders_a_video_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = write_talking_video(tmp_path / "clip.mp4", 0.4)
    audio = write_speech_wav(tmp_path / "v.wav", 0.6)
    out = tmp_path / "cli.mp4"
    args = ["--video", str(video), "--audio", str(audio), "--out", str(out), "--seed", "4"]
    assert cli_main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["frames"] == 15 and printed["fps"] == 25 and out.is_file()


def test_cli_renders_a_two_person_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = write_two_face_image(tmp_path / "two.png")
    left, right = (
        write_speech_wav(tmp_path / "l.wav", 0.4),
        write_speech_wav(tmp_path / "r.wav", 0.2),
    )
    out = tmp_path / "cli.mp4"
    args = ["--image", str(image), "--left-audio", str(left), "--right-audio", str(right)]
    assert cli_main([*args, "--order", "meanwhile", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 10


def test_cli_needs_both_audios_for_two_people(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli_main(["--image", "x.png", "--left-audio", "a.wav", "--out", str(tmp_path / "o")])
