"""Result files: written under the results directory, served by the gateway.

The inference workers put each finished MP4 here; job_service deletes it when
the customer deletes the job or its retention ends. The object key is what
job records store; in a cluster the same key names an object in an
S3-compatible bucket.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from lipsync_common.config import data_dir, env_str

# Object keys are flat file names: no separators, so no way out of the folder.
_OBJECT_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")


def results_dir() -> Path:
    """`LIPSYNC_RESULTS_DIR`, by default `results/` under the data directory."""
    return Path(env_str("LIPSYNC_RESULTS_DIR", str(data_dir() / "results")))


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

    def delete(self, key: str) -> bool:
        """Remove the object `key`; False when there was none. Refuses a key that is
        not a plain name, so that no record can point outside the store."""
        if not _OBJECT_KEY.fullmatch(key) or ".." in key:
            raise ValueError(f"not an object key: {key!r}")
        try:
            (self.root / key).unlink()
        except FileNotFoundError:
            return False
        return True
