"""`make bench`: the platform's overhead per job and the engine's render speed.

Figures are printed as JSON and written to `bench-report/platform.json`:

* render speed of lipsync-image, seconds of output per second of wall time,
  at 480p and 720p, measured on the engine library alone;
* platform overhead per job: submit → completed as the client sees it
  (polling every 50 ms), minus the time the worker spent rendering, over real
  processes and a real nats-server, as `make run` starts them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from inference_service.engine import LipsyncEngine
from tests.bench_report import write_report
from tests.integration.harness import (
    MediaHost,
    bearer,
    ctl,
    running_stack,
    stack_env,
)
from tests.media_fixtures import portrait_path, write_speech_wav

AUDIO_S = 20.0
JOBS = 8


def render_speed(work: Path) -> dict[str, float]:
    engine = LipsyncEngine()
    engine.setup()
    audio = write_speech_wav(work / "bench.wav", AUDIO_S)
    speeds: dict[str, float] = {}
    for height in (480, 720):
        started = time.perf_counter()
        result = engine.render_image(
            str(portrait_path()), str(audio), str(work / f"out{height}.mp4"), height=height, seed=1
        )
        wall = time.perf_counter() - started
        speeds[f"{height}p_output_s_per_wall_s"] = round(result.duration_s / wall, 2)
        speeds[f"{height}p_timings_ms"] = result.timings_ms  # type: ignore[assignment]
    return speeds


def platform_overhead(work: Path) -> dict[str, float]:
    media_dir = work / "media"
    media_dir.mkdir()
    (media_dir / "face.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(media_dir / "voice.wav", 3.0)
    media = MediaHost(media_dir)
    env = stack_env(work / "stack")
    overheads: list[float] = []
    totals: list[float] = []
    try:
        with (
            running_stack(work / "stack", env) as stack,
            httpx.Client(base_url=stack.http_url, timeout=30) as client,
        ):
            account = ctl(stack.env, "account", "create", "--email", "bench@example.com")
            account_id = account["account_id"]
            key = ctl(stack.env, "key", "create", "--account", account_id)["key"]
            ctl(
                stack.env,
                "credits",
                "grant",
                "--account",
                account_id,
                "--amount",
                "100000",
                "--reason",
                "bench",
            )
            body = {
                "formState": {
                    "image": f"{media.url}/face.jpg",
                    "audio": f"{media.url}/voice.wav",
                }
            }
            for _ in range(JOBS):
                started = time.perf_counter()
                job_id = client.post(
                    "/api/v1/lipsync-image", json=body, headers=bearer(key)
                ).json()["id"]
                while True:
                    job = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json()
                    if job["status"] != "processing":
                        break
                    time.sleep(0.05)
                total = time.perf_counter() - started
                assert job["status"] == "completed", job["error"]
                totals.append(total)
                overheads.append(total - job["timings"]["inference"] / 1000)
    finally:
        media.close()
    return {
        "jobs": JOBS,
        "submit_to_completed_median_s": round(statistics.median(totals), 3),
        "overhead_median_s": round(statistics.median(overheads), 3),
        "overhead_max_s": round(max(overheads), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = {
            "render_speed": render_speed(work),
            "platform_overhead": platform_overhead(work),
        }
    write_report("platform", report)


if __name__ == "__main__":
    main()
