"""Media arguments: a URL is sent as it is, a local path or an open file is uploaded first.

A string is a URL only when it starts with `http://` or `https://`; any other
string is a path on this machine, so a typo'd URL fails as a missing file
rather than as a confusing API error. The upload body is read through
`ProgressReader`, which counts the bytes for a progress bar and can be read
again from the start when a retry sends the request a second time.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Union

MediaInput = Union[str, "os.PathLike[str]", IO[bytes]]
# (name, bytes sent, total bytes or None): what upload progress bars are given.
UploadProgress = Callable[[str, int, int | None], None]


def is_url(value: object) -> bool:
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def display_name(media: MediaInput) -> str:
    """The file name an upload is sent under (and a progress bar shows)."""
    if isinstance(media, str | os.PathLike):
        return Path(media).name
    name = getattr(media, "name", None)
    return Path(name).name if isinstance(name, str) else "upload"


def content_type(name: str) -> str:
    # Only a hint: the API decides the kind from the file's content.
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def file_size(stream: IO[bytes]) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        pass
    try:
        here = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(here)
        return end
    except (AttributeError, OSError, ValueError):
        return None


class ProgressReader:
    """A binary file that reports each chunk read to a callback (httpx's multipart reads it)."""

    def __init__(self, raw: IO[bytes], name: str, callback: UploadProgress | None) -> None:
        self._raw = raw
        self.name = name
        self._callback = callback
        self.total = file_size(raw)
        self.sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self.sent += len(chunk)
        if self._callback is not None:
            self._callback(self.name, self.sent, self.total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._raw.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        # A retry sends the file again from its start, so a direct upload needs this.
        seekable = getattr(self._raw, "seekable", None)
        try:
            return bool(seekable()) if seekable is not None else False
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self._raw.fileno()


def open_media(media: MediaInput) -> tuple[IO[bytes], bool]:
    """The file to upload and whether this package opened it (and so must close it)."""
    if isinstance(media, str | os.PathLike):
        path = Path(media)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        return path.open("rb"), True
    return media, False
