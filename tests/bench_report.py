"""Where `make bench` leaves its figures: one JSON file per benchmark under bench-report/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_DIR = Path("bench-report")


def write_report(name: str, report: dict[str, Any]) -> Path:
    """Print ``report`` as JSON and keep it in ``bench-report/<name>.json``."""
    REPORT_DIR.mkdir(exist_ok=True)
    path = REPORT_DIR / f"{name}.json"
    text = json.dumps(report, indent=2)
    path.write_text(text)
    print(text)
    return path
