"""What every upload route works with: the store, who owns which id, the limits, the clock.

One value built once by the uploads router (gateway/routes_uploads.py) and
shared by the multipart routes and the direct ones (gateway/direct_uploads.py),
so the two can never be given different limits, expiry or store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.upload_owners import UploadOwners
from lipsync_common.storage import ObjectStore


@dataclass(frozen=True)
class UploadArea:
    store: ObjectStore
    owners: UploadOwners
    # Where files (and the small JSON objects) are written before the store takes them.
    incoming: Path
    # The largest upload per kind (image, audio, video), in bytes.
    limits: Mapping[str, int]
    ttl_s: float
    clock: Callable[[], float]
