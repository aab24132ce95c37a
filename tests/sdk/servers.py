"""Real loopback servers the retry tests put between the SDK and the API.

`ScriptedServer` answers each request with the next of a list of canned
answers (status, headers, body) and records what it was sent; it plays the
API's 429s and 503s that the stack cannot be made to give on demand.
`DroppingProxy` relays TCP to the real gateway, but for the first `drops`
requests it lets the gateway answer, reads the answer, and closes the
client's connection without passing it on: the request took effect, and the
client saw only a connection that died. With `drops=0` it only relays, and
its `request_lines` say what the gateway was sent (a direct upload's file
never is).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], Any]


class ScriptedServer:
    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                server.requests.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status, headers, payload = (
                    server.answers.pop(0) if server.answers else (500, {}, {"detail": "no answer"})
                )
                # Bytes go out as they are (a bucket's XML), None as no body at all.
                if isinstance(payload, bytes):
                    raw = payload
                elif payload is None:
                    raw = b""
                else:
                    raw = json.dumps(payload).encode()
                self.send_response(status)
                if "content-type" not in {name.lower() for name in headers}:
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DroppingProxy:
    def __init__(
        self,
        upstream: str,
        drops: int = 1,
        should_drop: Callable[[bytes], bool] | None = None,
        on_answered: Callable[[bytes], None] | None = None,
    ) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.drops = drops
        self.dropped: list[bytes] = []
        self.relayed = 0
        # The request line of every request relayed, in order ("POST /api/v1/uploads HTTP/1.1").
        self.request_lines: list[str] = []
        # Called with each request once the gateway has answered it, before the client sees it.
        self._on_answered = on_answered
        self._should_drop = should_drop or (lambda request: True)
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        try:
            while True:
                request = read_message(client)
                if not request:
                    return
                upstream.sendall(request)
                answer = read_message(upstream)
                if self._on_answered is not None:
                    self._on_answered(request)
                with self._lock:
                    self.request_lines.append(request.split(b"\r\n", 1)[0].decode("latin-1"))
                    drop = self.drops > 0 and self._should_drop(request)
                    if drop:
                        self.drops -= 1
                if drop:
                    # The gateway has finished the request; its answer is lost.
                    self.dropped.append(answer)
                    return
                client.sendall(answer)
                self.relayed += 1
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.listener.close()


def read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 request or answer with a Content-Length body; b"" when the peer closed."""
    buffered = b""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        if not chunk:
            if buffered:
                raise OSError("closed mid-message")
            return b""
        buffered += chunk
    head, _, body = buffered.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("closed mid-message")
        body += chunk
    return head + b"\r\n\r\n" + body
