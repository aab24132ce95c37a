"""One engine, two jobs at once on two threads: each gets exactly the frames it gets alone.

A worker renders every job with one ``LipsyncEngine``, possibly several at a
time (``asyncio.to_thread``). Any per-job state left on the engine, its
animator or its face models would leak from one job into the other here.

The frames compared are those the engine hands to the encoder: x264 with frame
threads does not always produce the same bitstream for the same frames when
the machine is loaded (seen: one encode in five differing), so comparing the
decoded files would test the encoder's scheduling, not the engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import pytest

from inference_service.engine import LipsyncEngine, RenderResult
from inference_service.media.image import load_image_bgr
from tests.media_fixtures import portrait_path, write_speech_wav, write_talking_video

# Renders one job to the output path it is given.
Job = Callable[[Path], RenderResult]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("threads")


@pytest.fixture(scope="module")
def mirrored(folder: Path) -> Path:
    """The portrait flipped left to right: another face, elsewhere in the frame."""
    path = folder / "mirrored.png"
    cv2.imwrite(str(path), cv2.flip(load_image_bgr(portrait_path()), 1))
    return path


def render_alone_and_together(jobs: list[Job], folder: Path, encoded: dict[str, list[str]]) -> None:
    """Render ``jobs`` one after the other, then all at once; assert identical frames."""
    alone = [job(folder / f"alone-{n}.mp4") for n, job in enumerate(jobs)]
    barrier = threading.Barrier(len(jobs))

    def together(n: int) -> RenderResult:
        barrier.wait()  # both start at once, so their frames interleave
        return jobs[n](folder / f"together-{n}.mp4")

    with ThreadPoolExecutor(len(jobs)) as pool:
        concurrent = list(pool.map(together, range(len(jobs))))

    expected = [encoded[f"alone-{n}.mp4"] for n in range(len(jobs))]
    # Two different jobs: a render that used the other's state could not match its own.
    assert expected[0][-1] != expected[1][-1]
    for n, (first, second) in enumerate(zip(alone, concurrent, strict=True)):
        assert replace(second, timings_ms={}) == replace(first, timings_ms={})
        frames = encoded[f"together-{n}.mp4"]
        assert len(frames) == len(expected[n]) == first.frames
        pairs = enumerate(zip(expected[n], frames, strict=True))
        differ = [i for i, (a, b) in pairs if a != b]
        assert not differ, f"job {n}: frames {differ} differ from the job rendered alone"


def test_two_image_jobs_at_once_render_as_they_do_one_after_the_other(
    engine: LipsyncEngine, folder: Path, mirrored: Path, encoded: dict[str, list[str]]
) -> None:
    first_audio = write_speech_wav(folder / "first.wav", 1.2)
    second_audio = write_speech_wav(folder / "second.wav", 1.0, silence_head=0.4)

    def first(out: Path) -> RenderResult:
        return engine.render_image(portrait_path(), first_audio, out, height=480, seed=7)

    def second(out: Path) -> RenderResult:
        return engine.render_image(mirrored, second_audio, out, height=480, seed=8)

    render_alone_and_together([first, second], folder, encoded)


def test_a_video_and_an_image_job_at_once_render_as_they_do_one_after_the_other(
    engine: LipsyncEngine, folder: Path, mirrored: Path, encoded: dict[str, list[str]]
) -> None:
    video = write_talking_video(folder / "talking.mp4", 0.8)
    video_audio = write_speech_wav(folder / "video.wav", 1.2, silence_head=0.2)
    image_audio = write_speech_wav(folder / "image.wav", 1.0)

    def video_job(out: Path) -> RenderResult:
        return engine.render_video(video, video_audio, out, height=480, seed=3)

    def image_job(out: Path) -> RenderResult:
        return engine.render_image(mirrored, image_audio, out, height=480, seed=4)

    render_alone_and_together([video_job, image_job], folder, encoded)
