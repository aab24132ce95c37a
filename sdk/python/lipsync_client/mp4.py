"""The duration of an MP4 from its `moov/mvhd` box, for the command's closing summary.

Pure Python over the box structure (ISO/IEC 14496-12 §8.2.2), so the package
needs no FFmpeg: walk the top-level boxes to `moov`, then its children to
`mvhd`, whose version 0 or 1 layout gives a timescale and a duration.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO


def _boxes(stream: IO[bytes], end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, payload size) of each box from the current position to `end`."""
    found: list[tuple[bytes, int, int]] = []
    while stream.tell() + 8 <= end:
        start = stream.tell()
        size, kind = struct.unpack(">I4s", stream.read(8))
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", stream.read(8))
            header = 16
        elif size == 0:
            size = end - start
        if size < header:
            break
        found.append((kind, start + header, size - header))
        stream.seek(start + size)
    return found


def duration_seconds(path: str | os.PathLike[str]) -> float | None:
    """Seconds of the movie, or None when the file is not an MP4 this can read."""
    try:
        with Path(path).open("rb") as stream:
            end = stream.seek(0, os.SEEK_END)
            stream.seek(0)
            for kind, offset, size in _boxes(stream, end):
                if kind != b"moov":
                    continue
                stream.seek(offset)
                for child, child_offset, _ in _boxes(stream, offset + size):
                    if child != b"mvhd":
                        continue
                    stream.seek(child_offset)
                    version = stream.read(1)[0]
                    stream.seek(3, os.SEEK_CUR)
                    if version == 1:
                        _, _, timescale, duration = struct.unpack(">QQIQ", stream.read(28))
                    else:
                        _, _, timescale, duration = struct.unpack(">IIII", stream.read(16))
                    return duration / timescale if timescale else None
    except (OSError, struct.error, IndexError):
        return None
    return None
