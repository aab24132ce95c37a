"""The `lipsync` command end to end: real stack, real media, run as a customer's shell runs it.

Each test runs the installed console script as a subprocess with only
LIPSYNC_API_KEY and LIPSYNC_BASE_URL set, reads what it printed, parses
`--json`, and checks the exit code of the contract in lipsync_client/cli.py.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lipsync_client import Client

from inference_service.media.probe import probe_output
from tests.sdk.conftest import SdkStack, lipsync_command

pytestmark = pytest.mark.integration


def test_image_job_prints_the_summary_and_saves_the_video(
    sdk_stack: SdkStack, tmp_path: Path
) -> None:
    account = sdk_stack.account(credits=100)
    out = tmp_path / "out.mp4"
    result = sdk_stack.cli(
        account.key,
        "image",
        sdk_stack.url("portrait.jpg"),
        sdk_stack.url("speech-3s.wav"),
        "-o",
        str(out),
        "--resolution",
        "720p",
        "--seed",
        "3",
    )
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(out)
    assert "  duration        3.20 s" in lines
    assert "  credits         20" in lines
    assert any(line.startswith("  execution time  ") and line.endswith(" s") for line in lines)
    assert "submitted" in result.stderr
    # No terminal: no bars, no carriage returns.
    assert "\r" not in result.stderr and "%" not in result.stderr
    info = probe_output(out)
    assert (info.video_codec, info.audio_codec, info.height) == ("h264", "aac", 720)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_json_on_every_command(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    key = account.key
    out = tmp_path / "multi.mp4"
    result = sdk_stack.cli(
        key,
        "multi",
        sdk_stack.url("two-faces.jpg"),
        sdk_stack.url("speech-3s.wav"),
        sdk_stack.url("speech-3s.wav"),
        "--order",
        "meanwhile",
        "-o",
        str(out),
        "--json",
    )
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    job = result.json()
    assert job["status"] == "completed" and job["model"] == "lipsync-image-multi"
    assert job["file"] == str(out) and abs(job["durationSeconds"] - 3.2) < 0.1
    assert job["credits"] == 10 and isinstance(job["executionTime"], int)
    assert out.stat().st_size > 0

    video = sdk_stack.cli(
        key,
        "video",
        sdk_stack.url("talking.mp4"),
        sdk_stack.url("speech-3s.wav"),
        "--json",
        "--no-wait",
    )
    assert video.code == 0, video.stderr
    video_id = video.json()["id"]
    waited = sdk_stack.cli(key, "jobs", "wait", video_id, "-o", str(tmp_path / "v.mp4"), "--json")
    assert waited.code == 0, waited.stderr
    assert waited.json()["status"] == "completed" and waited.json()["model"] == "lipsync-video"

    listed = sdk_stack.cli(key, "jobs", "list", "--json")
    assert [j["id"] for j in listed.json()["data"]] == [video_id, job["id"]]
    assert (
        sdk_stack.cli(key, "jobs", "list", "--limit", "1", "--json").json()["data"][0]["id"]
        == video_id
    )
    assert sdk_stack.cli(key, "jobs", "list", "--status", "failed", "--json").json() == {"data": []}
    got = sdk_stack.cli(key, "jobs", "get", job["id"], "--json").json()
    assert got["output"] == job["output"]
    # --json before the command works as well as after it.
    assert sdk_stack.cli(key, "--json", "balance").json() == {
        "api_credits": 80,
        "user_credits": 0,
    }
    estimate = sdk_stack.cli(
        key,
        "estimate",
        "image",
        sdk_stack.url("portrait.jpg"),
        sdk_stack.url("speech-3s.wav"),
        "--resolution",
        "720p",
        "--json",
    )
    assert estimate.json() == {"billed_seconds": 5, "credits": 20}
    usage = sdk_stack.cli(key, "usage", "--limit", "2", "--json").json()["data"]
    # Newest first: the video job's capture, then its reservation.
    assert [(e["kind"], e["job_id"]) for e in usage] == [
        ("capture", video_id),
        ("reserve", video_id),
    ]
    deleted = sdk_stack.cli(key, "jobs", "delete", job["id"], "--json")
    assert deleted.json() == {"id": job["id"], "deleted": True}
    assert sdk_stack.cli(key, "jobs", "get", job["id"], "--json").json()["deletedAt"]

    # And without --json, people get text.
    assert sdk_stack.cli(key, "balance").stdout == "API credits  80\nweb credits  0\n"
    text = sdk_stack.cli(key, "jobs", "get", video_id).stdout
    assert f"id              {video_id}" in text and "status          completed" in text
    assert (
        "20 credits (5 billed seconds)"
        in sdk_stack.cli(
            key,
            "estimate",
            "image",
            sdk_stack.url("portrait.jpg"),
            sdk_stack.url("speech-3s.wav"),
            "--resolution",
            "720p",
        ).stdout
    )


def test_a_failed_job_exits_1_with_its_error(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    out = tmp_path / "out.mp4"
    args = ("image", sdk_stack.url("no-face.png"), sdk_stack.url("speech-3s.wav"), "-o", str(out))
    result = sdk_stack.cli(account.key, *args)
    assert result.code == 1
    assert "failed: no face found in image" in result.stderr
    assert result.stdout == ""
    as_json = sdk_stack.cli(account.key, *args, "--json")
    assert as_json.code == 1
    assert as_json.json()["status"] == "failed" and as_json.json()["credits"] == 0
    assert not out.exists()


def test_no_wait_cancel_wait_and_delete(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    key = account.key
    submitted = sdk_stack.cli(
        key,
        "image",
        sdk_stack.url("portrait.jpg"),
        sdk_stack.url("speech-8s.wav"),
        "--resolution",
        "720p",
        "--no-wait",
    )
    assert submitted.code == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    canceled = sdk_stack.cli(key, "jobs", "cancel", job_id, "--json")
    assert canceled.code == 0, canceled.stderr
    assert canceled.json()["id"] == job_id
    waited = sdk_stack.cli(key, "jobs", "wait", job_id, "-o", str(tmp_path / "out.mp4"))
    assert waited.code == 1
    assert f"job {job_id} canceled" in waited.stderr
    assert not (tmp_path / "out.mp4").exists()
    again = sdk_stack.cli(key, "jobs", "cancel", job_id, "--json")
    assert again.code == 3 and again.json()["error"]["code"] == "job_finished"
    assert sdk_stack.cli(key, "jobs", "delete", job_id).stdout == f"job {job_id} deleted\n"


def test_exit_codes(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    image, audio = sdk_stack.url("portrait.jpg"), sdk_stack.url("speech-3s.wav")
    out = str(tmp_path / "out.mp4")

    # 2: usage.
    no_key = sdk_stack.cli(None, "balance")
    assert no_key.code == 2 and "LIPSYNC_API_KEY" in no_key.stderr
    bad_choice = sdk_stack.cli(account.key, "image", image, audio, "-o", out, "--resolution", "1k")
    assert bad_choice.code == 2 and "invalid choice" in bad_choice.stderr
    assert sdk_stack.cli(account.key, "image", image, audio).code == 2  # no -o
    missing = sdk_stack.cli(account.key, "image", str(tmp_path / "nope.jpg"), audio, "-o", out)
    assert missing.code == 2 and "no such file" in missing.stderr
    assert sdk_stack.cli(account.key).code == 2

    # 3: the API refuses.
    stranger = sdk_stack.cli("sk_unknownkey_" + "x" * 40, "balance", "--json")
    assert stranger.code == 3 and stranger.json()["error"]["status"] == 401
    poor = sdk_stack.account(credits=0)
    broke = sdk_stack.cli(poor.key, "image", image, audio, "-o", out, "--json")
    assert broke.code == 3 and broke.json()["error"]["status"] == 402
    unknown = sdk_stack.cli(account.key, "jobs", "get", "00000000-0000-0000-0000-000000000000")
    assert unknown.code == 3 and "404" in unknown.stderr
    long_prompt = sdk_stack.cli(
        account.key, "image", image, audio, "-o", out, "--prompt", "x" * 3000
    )
    assert long_prompt.code == 3 and "prompt" in long_prompt.stderr

    # 4: nobody answers, even after a retry.
    down = sdk_stack.cli(
        account.key, "balance", "--base-url", "http://127.0.0.1:9", "--max-retries", "1"
    )
    assert down.code == 4 and "after 2 tries" in down.stderr
    assert not Path(out).exists()


def _read_until(stream: int, marker: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} in {seen!r}"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = os.read(stream, 4096)
            assert chunk, f"closed before {marker!r}: {seen!r}"
            seen += chunk
    return seen


@pytest.mark.parametrize("cancel", [True, False])
def test_ctrl_c_while_waiting(sdk_stack: SdkStack, tmp_path: Path, cancel: bool) -> None:
    account = sdk_stack.account(credits=100)
    out = tmp_path / "out.mp4"
    args = [
        lipsync_command(),
        "image",
        sdk_stack.url("portrait.jpg"),
        sdk_stack.url("speech-8s.wav"),
        "--resolution",
        "720p",
        "-o",
        str(out),
    ]
    if cancel:
        args.append("--cancel-on-interrupt")
    process = subprocess.Popen(
        args,
        env=sdk_stack.cli_env(account.key),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = _read_until(process.stderr.fileno(), b"submitted\n", 30)
    job_id = seen.decode().split()[1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        job = client.jobs.get(job_id)
        if cancel:
            assert b"canceled; nothing is charged" in stderr
            assert job.wait(timeout=10).status == "canceled"
        else:
            # No terminal to ask at: the job is left running, and the way back is printed.
            assert f"lipsync jobs wait {job_id}".encode() in stderr
            assert job.wait(timeout=120).status == "completed"
    assert list(tmp_path.iterdir()) == [], "Ctrl-C left a file behind"


def test_bars_are_drawn_on_a_terminal(sdk_stack: SdkStack, tmp_path: Path) -> None:
    account = sdk_stack.account(credits=100)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [
                lipsync_command(),
                "image",
                sdk_stack.url("portrait.jpg"),
                sdk_stack.url("speech-8s.wav"),
                "-o",
                str(tmp_path / "out.mp4"),
            ],
            env={**sdk_stack.cli_env(account.key), "COLUMNS": "120", "TERM": "xterm"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        drawn = b""
        while True:
            ready, _, _ = select.select([controller], [], [], 120)
            assert ready, "the command hung"
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
    assert process.returncode == 0
    text = drawn.decode(errors="replace")
    assert "job completed" in text and "100%" in text and "download" in text
    assert stdout.decode().startswith(str(tmp_path / "out.mp4"))


@pytest.mark.parametrize("answer", [b"y\n", b"\n"])
def test_ctrl_c_at_a_terminal_asks_before_canceling(
    sdk_stack: SdkStack, tmp_path: Path, answer: bytes
) -> None:
    account = sdk_stack.account(credits=100)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [
                lipsync_command(),
                "image",
                sdk_stack.url("portrait.jpg"),
                sdk_stack.url("speech-8s.wav"),
                "--resolution",
                "720p",
                "-o",
                str(tmp_path / "out.mp4"),
            ],
            env={**sdk_stack.cli_env(account.key), "TERM": "dumb"},
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        seen = _read_until(controller, b"submitted", 30)
        job_id = seen.decode(errors="replace").split("job ", 1)[1].split()[0]
        process.send_signal(signal.SIGINT)
        _read_until(controller, f"cancel job {job_id}? [y/N]".encode(), 30)
        os.write(controller, answer)
        assert process.wait(timeout=30) == 130
        said = b""
        while select.select([controller], [], [], 1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            said += chunk
    finally:
        os.close(controller)
    with Client(api_key=account.key, base_url=sdk_stack.base_url) as client:
        job = client.jobs.get(job_id).wait(timeout=120)
    if answer == b"y\n":
        assert b"canceled; nothing is charged" in said
        assert job.status == "canceled"
    else:
        assert b"keeps running" in said
        assert job.status == "completed"
    assert not (tmp_path / "out.mp4").exists()
