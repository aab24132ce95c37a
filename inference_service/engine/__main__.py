"""Render one job from the command line and print its RenderResult as JSON.

    python -m inference_service.engine --image face.png --audio voice.wav --out out.mp4
    python -m inference_service.engine --video clip.mp4 --audio voice.wav --out out.mp4
    python -m inference_service.engine --image two.png --left-audio a.wav --right-audio b.wav \\
        --order meanwhile --out out.mp4
    common options: [--resolution 480p|720p] [--mask mask.png] [--seed N] [--no-idle-motion]

``LIPSYNC_ENGINE`` and ``LIPSYNC_TORCHSCRIPT_MODEL`` choose the engine as in the worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from inference_service.engine.engine import LipsyncEngine, RenderResult
from inference_service.engine.job_audio import ORDERS
from inference_service.engine.selection import engine_from_env
from inference_service.media.errors import MediaError

RESOLUTIONS = {"480p": 480, "720p": 720}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference_service.engine")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="portrait, or two people with --left/--right-audio")
    source.add_argument("--video", help="source video whose lips are re-animated")
    parser.add_argument("--audio", help="speech audio (any FFmpeg format)")
    parser.add_argument("--left-audio", help="audio of the left person (two-person image)")
    parser.add_argument("--right-audio", help="audio of the right person (two-person image)")
    parser.add_argument("--order", choices=ORDERS, default="left_right")
    parser.add_argument("--out", required=True, help="output MP4 path")
    parser.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="480p")
    parser.add_argument("--mask", help="mask image: white where pixels may change")
    parser.add_argument("--seed", type=int, default=None, help="-1 or absent: random")
    parser.add_argument("--no-idle-motion", action="store_true", help="no blinks or head sway")
    return parser


def _render(engine: LipsyncEngine, args: argparse.Namespace) -> RenderResult:
    height = RESOLUTIONS[args.resolution]
    common = {"height": height, "seed": args.seed, "mask_path": args.mask}
    if args.video:
        return engine.render_video(args.video, args.audio, args.out, **common)
    if args.left_audio:
        return engine.render_multi(
            args.image,
            args.left_audio,
            args.right_audio,
            args.out,
            order=args.order,
            idle_motion=not args.no_idle_motion,
            **common,
        )
    return engine.render_image(
        args.image, args.audio, args.out, idle_motion=not args.no_idle_motion, **common
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    two_people = args.left_audio or args.right_audio
    if two_people and not (args.image and args.left_audio and args.right_audio):
        parser.error("--left-audio and --right-audio go together, with --image")
    if not two_people and not args.audio:
        parser.error("--audio is required (or --left-audio and --right-audio)")
    engine = engine_from_env()
    engine.setup()
    try:
        result = _render(engine, args)
    except MediaError as exc:
        print(json.dumps({"error": exc.user_message}), file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
