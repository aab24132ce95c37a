"""Engine speed and memory on this machine: ``python -m tests.engine_speed`` prints JSON.

For each mode (image, video, multi) at 480p and 720p: seconds of output per
second of wall time and the engine's stage breakdown (decode, detect, render,
encode). Then one long 720p video job (10 minutes by default: a 10 s clip
extended by ping-pong to a 600 s audio, which exercises the bounded
backward decoding) run in a child process, whose peak RSS is reported.

    python -m tests.engine_speed [--seconds 10] [--long-seconds 600] [--skip-long]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from inference_service.engine import LipsyncEngine
from tests.bench_report import write_report
from tests.media_fixtures import (
    portrait_path,
    write_speech_wav,
    write_talking_video,
    write_two_face_image,
)


def _job(engine: LipsyncEngine, mode: str, folder: Path, height: int, seconds: float) -> dict:
    # Inputs are made before the clock starts.
    audio = folder / f"speech-{seconds:g}.wav"
    if not audio.exists():
        write_speech_wav(audio, seconds, silence_tail=0.5)
    image, video = folder / "two.png", folder / f"clip-{height}.mp4"
    if mode == "multi" and not image.exists():
        write_two_face_image(image)
    if mode == "video" and not video.exists():
        width = round(height * 16 / 9 / 2) * 2
        write_talking_video(video, min(seconds, 10.0), size=(width, height))
    out = folder / f"{mode}-{height}.mp4"
    started = time.perf_counter()
    if mode == "image":
        result = engine.render_image(portrait_path(), audio, out, height=height, seed=1)
    elif mode == "multi":
        result = engine.render_multi(
            image, audio, audio, out, order="meanwhile", height=height, seed=1
        )
    else:
        result = engine.render_video(video, audio, out, height=height, seed=1)
    wall = time.perf_counter() - started
    return {
        "mode": mode,
        "resolution": f"{height}p",
        "size": f"{result.width}x{result.height}",
        "output_s": result.duration_s,
        "wall_s": round(wall, 2),
        "realtime_x": round(result.duration_s / wall, 2),
        "stages_ms": result.timings_ms,
    }


def _long_child(folder: Path, seconds: float) -> None:
    """Runs in a child process so its peak RSS is its own."""
    engine = LipsyncEngine(max_audio_s=None)
    engine.setup()
    print(json.dumps(_job(engine, "video", folder, 720, seconds)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.engine_speed")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--long-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.long_child:
        _long_child(Path(args.long_child), args.long_seconds)
        return 0

    report: dict = {"cpus": os.cpu_count(), "modes": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = LipsyncEngine()
        engine.setup()
        report["device"] = engine.device
        for mode in ("image", "video", "multi"):
            for height in (480, 720):
                report["modes"].append(_job(engine, mode, folder, height, args.seconds))
        if not args.skip_long:
            child = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.engine_speed",
                    "--long-child",
                    tmp,
                    "--long-seconds",
                    str(args.long_seconds),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            long_job = json.loads(child.stdout.strip().splitlines()[-1])
            # ru_maxrss is in KiB on Linux: the largest child that has finished.
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            long_job["peak_rss_mb"] = round(peak_kib / 1024)
            report["long_job"] = long_job
    write_report("engine", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
