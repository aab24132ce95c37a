"""Result files: written under the results directory, served by the gateway.

The object key is what job records store; in a cluster the same key names an
object in an S3-compatible bucket.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class ResultStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, job_id: str, source: Path) -> str:
        """Move a finished MP4 into the store atomically; returns its key."""
        key = f"{job_id}.mp4"
        partial = self.root / f".{key}.partial"
        shutil.move(source, partial)
        os.replace(partial, self.root / key)
        return key
