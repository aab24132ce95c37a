"""Result files: the `results` area of the object store (lipsync_common/storage.py).

The inference workers put each finished MP4 under `result_key(job_id)`; job
records store that key; job_service deletes the object when the customer
deletes the job or its retention ends; the gateway serves it behind a signed
URL (gateway/routes_files.py), from the folder or by redirecting to the bucket.
On one machine the area is the folder `results_dir()`; with
`LIPSYNC_STORAGE_URL=s3://bucket/prefix` it is `prefix/results/` in the bucket,
and no folder is shared between the gateway and the workers.
"""

from __future__ import annotations

from pathlib import Path

from lipsync_common.config import data_dir, env_str
from lipsync_common.local_store import LocalStore
from lipsync_common.storage import ObjectStore, open_store

AREA = "results"

# The results folder of one machine; tests build it directly.
ResultStore = LocalStore


def results_dir() -> Path:
    """`LIPSYNC_RESULTS_DIR`, by default `results/` under the data directory."""
    return Path(env_str("LIPSYNC_RESULTS_DIR", str(data_dir() / "results")))


def result_key(job_id: str) -> str:
    """The object key of a job's output: a flat name, as `/files/{key}` needs."""
    return f"{job_id}.mp4"


def result_store(local_dir: Path) -> ObjectStore:
    """The results area: `local_dir`, or the bucket of `LIPSYNC_STORAGE_URL`."""
    return open_store(AREA, local_dir)
