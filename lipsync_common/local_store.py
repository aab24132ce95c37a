"""The object store as a folder on this machine: what `make run` uses.

A key's names are folders under the root, its last name the file. A put moves
the source to a hidden partial name in the destination folder and renames it
into place, so a reader never sees half a file, even when the source lies on
another file system. There are no URLs of its own: the gateway serves the files
(gateway/routes_files.py), and nothing expires by itself (the retention sweep
removes old objects).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from lipsync_common.storage import NotStored, check_key


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, source: Path) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.parent / f".{target.name}.partial"
        shutil.move(source, partial)
        os.replace(partial, target)
        return key

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotStored(key) from None

    def local_path(self, key: str) -> Path | None:
        # Resolved, so that a link inside the folder cannot serve a file outside it.
        root = self.root.resolve()
        path = self._path(key).resolve()
        if not path.is_relative_to(root) or path == root or not path.is_file():
            return None
        return path

    def url(self, key: str, expires_s: int, method: str = "GET") -> str | None:
        return None

    def upload_url(self, key: str, expires_s: int) -> str | None:
        return None

    def expire_after(self, seconds: float) -> bool:
        return False
