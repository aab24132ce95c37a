"""lipsync-image quality rules, measured on the rendered MP4 (see tests/quality).

One 5 s render with idle motion (the product as shipped) for sync and closed
mouths, one without for the stability rules, which compare with the input.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_service.engine import LipsyncEngine
from tests.quality import rules, scenarios
from tests.quality.scenarios import ModeQuality


@pytest.fixture(scope="module")
def renders(
    engine: LipsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> dict[bool, ModeQuality]:
    work = tmp_path_factory.mktemp("quality-image")
    return {
        idle: scenarios.run_image(engine, Path(work), 480, idle_motion=idle)
        for idle in (True, False)
    }


@pytest.fixture(scope="module")
def still(renders: dict[bool, ModeQuality]) -> ModeQuality:
    return renders[False]


@pytest.mark.parametrize("idle_motion", [True, False], ids=["idle", "still"])
def test_mouth_follows_the_loudness(renders: dict[bool, ModeQuality], idle_motion: bool) -> None:
    sync = renders[idle_motion].person("face").sync
    assert sync.best_r >= rules.SYNC_MIN_R, sync
    assert abs(sync.best_lag) <= rules.SYNC_MAX_LAG, sync


@pytest.mark.parametrize("idle_motion", [True, False], ids=["idle", "still"])
def test_mouth_is_closed_in_silence(renders: dict[bool, ModeQuality], idle_motion: bool) -> None:
    closed = renders[idle_motion].person("face").closed
    assert closed.pause_frames >= 25  # head, tail and phrase pauses were found
    assert closed.fraction <= rules.PAUSE_MAX_FRACTION, closed


def test_outside_the_mouth_and_jaw_the_output_is_the_input(still: ModeQuality) -> None:
    assert still.psnr_outside_min_db is not None
    assert still.psnr_outside_min_db >= rules.PSNR_MIN_DB, (
        still.psnr_outside_min_db,
        still.psnr_codec_only_db,
    )


def test_the_engine_adds_no_loss_outside_the_region_beyond_the_codec(still: ModeQuality) -> None:
    # Whatever the encoder costs, the engine itself must leave those pixels alone: the
    # render scores (within 0.3 dB) what the bare input scores through the same encoder.
    assert still.psnr_outside_min_db is not None and still.psnr_codec_only_db is not None
    assert still.psnr_outside_min_db >= still.psnr_codec_only_db - 0.3


def test_no_flicker_at_the_region_edge(still: ModeQuality) -> None:
    assert still.flicker is not None
    assert still.flicker.excess <= rules.FLICKER_MAX_EXCESS, still.flicker
    # The measurement saw the mouth move inside the region, or it measured nothing.
    assert still.flicker.inside > 10 * rules.FLICKER_MAX_EXCESS


def test_the_face_is_found_in_every_frame(renders: dict[bool, ModeQuality]) -> None:
    assert all(quality.faces_found == 1.0 for quality in renders.values())
