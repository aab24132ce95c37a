"""The engine's per-batch frame callback: how far a render is, and how a cancel stops it."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.engine import LipsyncEngine
from tests.media_fixtures import portrait_path, write_speech_wav, write_talking_video

FPS = 25


class Stop(Exception):
    pass


def test_an_image_render_reports_every_batch_up_to_its_total(
    engine: LipsyncEngine, tmp_path: Path
) -> None:
    audio = write_speech_wav(tmp_path / "a.wav", 1.0)
    reports: list[tuple[int, int]] = []
    result = engine.render_image(
        str(portrait_path()),
        str(audio),
        str(tmp_path / "o.mp4"),
        height=480,
        on_frames=lambda done, total: reports.append((done, total)),
    )
    assert reports[0] == (0, FPS) and reports[-1] == (FPS, FPS) == (result.frames, FPS)
    done = [d for d, _ in reports]
    assert done == sorted(set(done))  # one report per batch, always further


def test_a_video_render_reports_its_frames(engine: LipsyncEngine, tmp_path: Path) -> None:
    video = write_talking_video(tmp_path / "v.mp4", 0.6, fps=FPS)
    audio = write_speech_wav(tmp_path / "a.wav", 1.0)
    reports: list[tuple[int, int]] = []
    engine.render_video(
        str(video),
        str(audio),
        str(tmp_path / "o.mp4"),
        height=480,
        on_frames=lambda done, total: reports.append((done, total)),
    )
    assert reports[0] == (0, FPS) and reports[-1] == (FPS, FPS)


def test_a_callback_that_raises_stops_the_render_and_leaves_no_file(
    engine: LipsyncEngine, tmp_path: Path
) -> None:
    audio = write_speech_wav(tmp_path / "a.wav", 4.0)
    out = tmp_path / "o.mp4"
    reports: list[int] = []

    def stop_at_ten(done: int, total: int) -> None:
        reports.append(done)
        if done >= 10:
            raise Stop

    with pytest.raises(Stop):
        engine.render_image(str(portrait_path()), str(audio), str(out), on_frames=stop_at_ten)
    assert reports[-1] == 10  # not a frame more
    assert not out.exists()
