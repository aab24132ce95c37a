"""Writing a job's output: to a hidden part file beside the target, renamed when whole.

The target path either does not change or holds the complete MP4: the bytes
go to `.<name>.<random>.part` in the same folder (so the rename is atomic,
never across file systems), the length is checked against `Content-Length`,
the file is flushed to disk, and only then renamed over the target. Any
exception on the way, Ctrl-C included, removes the part file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from lipsync_client.errors import DownloadError

# (bytes written, total bytes or None)
DownloadProgress = Callable[[int, int | None], None]
CHUNK_BYTES = 256 * 1024


class PartFile:
    def __init__(self, target: str | os.PathLike[str], total: int | None) -> None:
        self.target = Path(target)
        self.total = total
        self.written = 0
        self.part = self.target.with_name(f".{self.target.name}.{uuid.uuid4().hex[:8]}.part")
        self._file: IO[bytes] | None = None

    def __enter__(self) -> PartFile:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.part.open("wb")
        return self

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self.written += len(chunk)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._file is not None
        try:
            if kind is None:
                if self.total is not None and self.written != self.total:
                    raise DownloadError(
                        f"download of {self.target.name} stopped at {self.written} of"
                        f" {self.total} bytes"
                    )
                self._file.flush()
                os.fsync(self._file.fileno())
            self._file.close()
            if kind is None:
                os.replace(self.part, self.target)
        finally:
            if not self._file.closed:
                self._file.close()
            self.part.unlink(missing_ok=True)


def content_length(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
