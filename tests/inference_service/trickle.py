"""A local HTTP origin that serves files, and trickles bytes on `/slow/...`.

The slow answer sends one byte every `gap_s`, well within any per-read timeout,
for as long as the client keeps reading: only a total deadline ends it.
"""

from __future__ import annotations

import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType


class _Handler(SimpleHTTPRequestHandler):
    gap_s = 0.1

    def do_GET(self) -> None:
        if not self.path.startswith("/slow/"):
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("content-length", str(1 << 20))
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.gap_s)
        except OSError:
            pass  # the client gave up, as it should

    def log_message(self, *args: object) -> None:
        pass


class TrickleOrigin:
    """`with TrickleOrigin(folder) as origin:` serves `folder` at `origin.url`."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_Handler, directory=str(folder))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A trickle ends only when its client leaves: closing must not wait for it.
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> TrickleOrigin:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
