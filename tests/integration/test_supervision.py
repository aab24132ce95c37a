"""The local supervisor: a process that dies is started again, and the API stays up."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from lipsync_common.devstack import Stack, grpc_serving
from tests.integration.harness import running_stack, stack_env

pytestmark = pytest.mark.integration


def supervise_until(stack: Stack, done: object, timeout_s: float = 60.0) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"supervisor records: {records}"
        records += stack.supervise()
        time.sleep(0.1)
    return records


def test_a_killed_service_is_restarted_and_the_api_answers_meanwhile(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "stack")
    with running_stack(tmp_path / "stack", env) as stack:
        others = {name: p.pid for name, p in stack.children if name != "job_service"}
        job_service = dict(stack.children)["job_service"]
        job_service.send_signal(signal.SIGKILL)
        job_service.wait(10)
        with httpx.Client(base_url=stack.http_url) as client:
            # The gateway and billing are untouched by job_service's death.
            assert client.get("/api/v1/pricing").status_code == 200
            records = supervise_until(stack, lambda: grpc_serving(env["LIPSYNC_JOBS_ADDR"]))
            assert client.get("/readyz").status_code == 200
        # Only the dead process was started again.
        assert {name: p.pid for name, p in stack.children if name != "job_service"} == others
    assert records[0]["msg"] == "process died" and records[0]["process"] == "job_service"
    assert records[0]["exit_code"] == -signal.SIGKILL
    assert {"msg": "process restarted", "process": "job_service"} in records


def test_a_process_that_keeps_dying_is_restarted_ever_more_slowly(tmp_path: Path) -> None:
    stack = Stack({"PATH": "/usr/bin:/bin"}, log_dir=tmp_path / "logs")
    stack._spawn("crasher", ["sh", "-c", "exit 3"])
    try:
        stack.children[0][1].wait(10)
        now = time.monotonic()
        first = stack.supervise(now)
        assert first == [
            {"msg": "process died", "process": "crasher", "exit_code": 3, "restart_in_s": 0.5}
        ]
        assert stack.supervise(now + 0.4) == []  # not yet due
        assert stack.supervise(now + 0.5) == [{"msg": "process restarted", "process": "crasher"}]
        stack.children[0][1].wait(10)
        again = stack.supervise(now + 0.6)
        assert again[0]["restart_in_s"] == 1.0  # it died again at once: twice the delay
    finally:
        stack.stop()
