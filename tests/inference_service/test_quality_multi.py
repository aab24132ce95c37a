"""lipsync-image-multi quality rules: two people, two voices, each mouth tracked on its own.

The photo is the portrait and its mirror image side by side; left and right
speak different (seeded) voices of different lengths.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.engine import LipsyncEngine
from tests.quality import rules, scenarios
from tests.quality.scenarios import ModeQuality

PEOPLE = ("left", "right")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("quality-multi"))


# right_left mirrors left_right (the report renders all three); two orders keep this file fast.
@pytest.fixture(scope="module", params=["left_right", "meanwhile"])
def multi(engine: LipsyncEngine, work: Path, request: pytest.FixtureRequest) -> ModeQuality:
    return scenarios.run_multi(engine, work, 480, request.param, idle_motion=False)


@pytest.mark.parametrize("person", PEOPLE)
def test_each_mouth_follows_its_own_audio(multi: ModeQuality, person: str) -> None:
    sync = multi.person(person).sync
    assert sync.best_r >= rules.SYNC_MIN_R, sync
    assert abs(sync.best_lag) <= rules.SYNC_MAX_LAG, sync


@pytest.mark.parametrize("person", PEOPLE)
def test_silent_person_and_pauses_keep_the_mouth_closed(multi: ModeQuality, person: str) -> None:
    # In left_right / right_left each person is silent for the whole of the other's turn.
    closed = multi.person(person).closed
    assert closed.pause_frames >= 10
    assert closed.fraction <= rules.PAUSE_MAX_FRACTION, closed


def test_voices_are_placed_as_the_order_says(multi: ModeQuality) -> None:
    left, right = multi.person("left"), multi.person("right")
    order = multi.mode.removeprefix("multi-")
    expected = {"left_right": (0.0, 3.0), "meanwhile": (0.0, 0.0)}
    assert (left.audio_offset_s, right.audio_offset_s) == pytest.approx(expected[order], abs=0.03)


def test_no_flicker_at_the_region_edge(multi: ModeQuality) -> None:
    assert multi.flicker is not None
    assert multi.flicker.excess <= rules.FLICKER_MAX_EXCESS, multi.flicker


def test_outside_the_mouths_and_jaws_the_output_is_the_input(multi: ModeQuality) -> None:
    assert multi.psnr_outside_min_db is not None
    assert multi.psnr_outside_min_db >= rules.PSNR_MIN_DB, (
        multi.psnr_outside_min_db,
        multi.psnr_codec_only_db,
    )


def test_the_engine_adds_no_loss_outside_the_regions_beyond_the_codec(multi: ModeQuality) -> None:
    assert multi.psnr_outside_min_db is not None and multi.psnr_codec_only_db is not None
    assert multi.psnr_outside_min_db >= multi.psnr_codec_only_db - 0.3


def test_both_faces_are_found_in_every_frame(multi: ModeQuality) -> None:
    assert multi.faces_found == 1.0
