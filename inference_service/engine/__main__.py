"""Render one job from the command line and print its RenderResult as JSON.

    python -m inference_service.engine --image face.png --audio voice.wav --out out.mp4 \\
        [--resolution 480p|720p] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from inference_service.engine.engine import LipsyncEngine
from inference_service.media.errors import MediaError

RESOLUTIONS = {"480p": 480, "720p": 720}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference_service.engine")
    parser.add_argument("--image", required=True, help="portrait image (PNG, JPEG, WebP)")
    parser.add_argument("--audio", required=True, help="speech audio (any FFmpeg format)")
    parser.add_argument("--out", required=True, help="output MP4 path")
    parser.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="480p")
    parser.add_argument("--seed", type=int, default=None, help="-1 or absent: random")
    args = parser.parse_args(argv)

    engine = LipsyncEngine()
    engine.setup()
    try:
        result = engine.render_image(
            args.image, args.audio, args.out, height=RESOLUTIONS[args.resolution], seed=args.seed
        )
    except MediaError as exc:
        print(json.dumps({"error": exc.user_message}), file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
