"""The other side of the network in the fault suite: webhook receivers and a slow media host.

Each receiver records every attempt it sees (time, headers, the job id of the
body), because the suite's checks are about attempts: that a job's attempts
all carry one `webhook-id`, and how long after the job ended the first one came.

* `WebhookReceiver` answers 204 to every POST. `stop()` closes its listening
  socket, so senders get "connection refused" (a receiver that is down);
  `start()` listens again on the same port.
* `HangingReceiver` accepts, reads the request's headers, records them and
  never answers: the worst a receiver can do to a sender's timeouts.
* `TrickleHost` serves files one byte per second: a media server that would
  hold a worker's download for as long as the file is long.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Attempt:
    """One webhook request as a receiver saw it."""

    at: float  # time.time() when the request's headers had arrived
    job_id: str
    webhook_id: str
    status: str  # the job status in the body; "" when the body was never read
    answered: bool  # whether the receiver answered 2xx


class _Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()

    def record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def by_job(self) -> dict[str, list[Attempt]]:
        with self._lock:
            attempts = list(self.attempts)
        grouped: dict[str, list[Attempt]] = {}
        for attempt in attempts:
            grouped.setdefault(attempt.job_id, []).append(attempt)
        return grouped


class WebhookReceiver(_Recorder):
    """A well-behaved receiver that can be taken down and brought back on its port."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                receiver.record(
                    Attempt(
                        at=arrived,
                        job_id=str(body.get("id", "")),
                        webhook_id=self.headers.get("webhook-id", ""),
                        status=str(body.get("status", "")),
                        answered=True,
                    )
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        # allow_reuse_address (set by HTTPServer) lets the port be bound again at once.
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def up(self) -> bool:
        return self._server is not None


class HangingReceiver(_Recorder):
    """Accepts connections, reads the request head, and never answers."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)
            threading.Thread(target=self._read_head, args=(conn,), daemon=True).start()

    def _read_head(self, conn: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
        except OSError:
            return
        arrived = time.time()
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        # The job id is in the body, which may be in `head` already; read no more.
        body = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
        job_id = ""
        try:
            job_id = str(json.loads(body).get("id", ""))
        except ValueError:
            pass
        self.record(
            Attempt(
                at=arrived,
                job_id=job_id,
                webhook_id=headers.get("webhook-id", ""),
                status="",
                answered=False,
            )
        )
        # Hold the connection open without a byte of answer until close().

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        for conn in self._held:
            conn.close()


class TrickleHost:
    """Serves files from a folder at one byte per second."""

    def __init__(self, root: Path, bytes_per_s: float = 1.0) -> None:
        self.root = root
        self.requests = 0
        self._closed = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests += 1
                path = host.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    for index in range(len(body)):
                        if host._closed.wait(1 / bytes_per_s):
                            return
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                except OSError:
                    return  # the client gave up, as it should

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()
