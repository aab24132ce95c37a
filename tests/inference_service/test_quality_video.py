"""lipsync-video quality rules on a synthetic talking-face video (pan, zoom, a moving mouth).

The source video's mouth already talks, to a sound track of its own, from its
first frame to its last: the engine has to suppress that movement, close the
mouth in the new audio's silences and follow the new audio instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.engine import LipsyncEngine
from tests.quality import rules, scenarios
from tests.quality.scenarios import ModeQuality


@pytest.fixture(scope="module")
def video(engine: LipsyncEngine, tmp_path_factory: pytest.TempPathFactory) -> ModeQuality:
    return scenarios.run_video(engine, Path(tmp_path_factory.mktemp("quality-video")), 480)


def test_mouth_follows_the_new_audio(video: ModeQuality) -> None:
    sync = video.person("face").sync
    assert sync.best_r >= rules.SYNC_MIN_R, sync
    assert abs(sync.best_lag) <= rules.SYNC_MAX_LAG, sync


def test_the_original_mouth_movement_is_suppressed(video: ModeQuality) -> None:
    # Had the source's own talking leaked through, the mouth would correlate with the source's
    # sound track; the two (independent) sound tracks correlate at 0.04, so chance is ~0.2.
    face = video.person("face")
    assert face.cross is not None
    assert face.cross.best_r <= 0.3, face.cross


def test_mouth_is_closed_in_silence(video: ModeQuality) -> None:
    closed = video.person("face").closed
    assert closed.pause_frames >= 20
    assert closed.fraction <= rules.PAUSE_MAX_FRACTION, closed


def test_no_flicker_at_the_region_edge(video: ModeQuality) -> None:
    assert video.flicker is not None
    assert video.flicker.excess <= rules.FLICKER_MAX_EXCESS, video.flicker
    assert video.flicker.inside > 10 * rules.FLICKER_MAX_EXCESS


def test_the_face_is_tracked_in_every_frame(video: ModeQuality) -> None:
    assert video.faces_found == 1.0
    assert video.fps == 25 and video.frames == 100  # the audio's 4 s at the source's rate
