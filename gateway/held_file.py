"""A file response that opens its file when it is made, so a delete cannot cut it short.

Starlette's `FileResponse` stats the path, sends the headers (the length among
them), and only then opens the file. A `DELETE` of the job or upload landing
in between (two requests of one client at once) left a response that had
promised N bytes and sent none: the client saw a broken connection, not a 404.
Here the handler opens the file first (a missing file is the caller's 404) and
the response reads through that descriptor (`/dev/fd/N`): on POSIX an open
file stays readable after it is unlinked, so a download that started finishes,
and one that starts after the delete is a plain 404. Ranges and HEAD work as in
`FileResponse`, which does the sending.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send


class HeldFileResponse(FileResponse):
    def __init__(
        self, path: Path, *, media_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Opens ``path`` now: FileNotFoundError if it is gone."""
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            held = os.fstat(self._fd)
            super().__init__(
                f"/dev/fd/{self._fd}", media_type=media_type, headers=headers, stat_result=held
            )
        except BaseException:
            self.close()
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.close()

    def close(self) -> None:
        """Release the descriptor; harmless when done already."""
        fd = getattr(self, "_fd", -1)  # none when the open itself failed
        if fd >= 0:
            self._fd = -1
            os.close(fd)

    def __del__(self) -> None:
        # A response built but never sent (the request ended first) still lets go.
        self.close()
