"""What a worker reports about a job's progress, on a clock the test moves."""

from __future__ import annotations

from inference_service.progress import FINISH_ALLOWANCE_S, Progress
from lipsync.jobs.v1 import jobs_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_percent_follows_the_stages_and_frames_and_never_goes_down() -> None:
    progress = Progress("job-1", 2, Clock())
    first = progress.notice()
    assert (first.stage, first.percent, first.attempt) == (jobs_pb2.JOB_STAGE_DOWNLOADING, 0, 2)
    progress.reach(5)
    progress.enter(jobs_pb2.JOB_STAGE_QUEUED)
    assert progress.notice().percent == 10
    progress.enter(jobs_pb2.JOB_STAGE_RENDERING)
    progress.frames(0, 200)
    progress.frames(100, 200)
    assert progress.notice().percent == 10 + 85 // 2
    progress.reach(5)  # a step back is ignored
    assert progress.notice().percent == 52
    progress.frames(200, 200)
    assert progress.notice().percent == 95
    progress.enter(jobs_pb2.JOB_STAGE_FINISHING)
    progress.reach(99)
    notice = progress.notice()
    assert (notice.stage, notice.percent) == (jobs_pb2.JOB_STAGE_FINISHING, 99)
    assert (notice.frames_done, notice.frames_total) == (200, 200)


def test_the_eta_comes_from_the_measured_rate_once_half_a_second_was_measured() -> None:
    clock = Clock()
    progress = Progress("job-1", 1, clock)
    progress.enter(jobs_pb2.JOB_STAGE_RENDERING)
    progress.frames(0, 300)
    clock.now += 0.4
    progress.frames(20, 300)
    assert not progress.notice().HasField("eta_seconds")  # 0.4 s is too little to tell
    clock.now += 0.6
    progress.frames(50, 300)  # 50 frames a second
    assert progress.notice().eta_seconds == 5 + FINISH_ALLOWANCE_S
    clock.now += 2.0  # no report for a while: the time passed counts
    assert progress.notice().eta_seconds == 3 + FINISH_ALLOWANCE_S


def test_a_stage_change_asks_for_a_notice_at_once() -> None:
    progress = Progress("job-1", 1, Clock())
    progress.changed.clear()
    progress.enter(jobs_pb2.JOB_STAGE_DOWNLOADING)  # the same stage: nothing new
    assert not progress.changed.is_set()
    progress.enter(jobs_pb2.JOB_STAGE_RENDERING)
    assert progress.changed.is_set()
