"""`python -m gateway`: serve the REST API until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any

import uvicorn
import uvloop
from starlette.types import ASGIApp

from gateway.app import create_app
from gateway.clients import connect
from gateway.job_notices import JobNotices
from gateway.settings import GatewaySettings
from lipsync_common.config import split_host_port
from lipsync_common.heap import settle_after_startup
from lipsync_common.logs import setup_logging
from lipsync_common.metrics import serve_metrics

log = logging.getLogger("gateway")


class Server(uvicorn.Server):
    """uvicorn's server, stopping gracefully on SIGTERM/SIGINT and then returning.

    uvicorn re-raises the signal once it has drained, which would end the process
    before the gRPC channels are closed; here the caller gets control back.
    `on_exit` runs when the signal comes, before the draining starts.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._on_exit is not None:
            self._on_exit()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


def server_config(app: ASGIApp, http_addr: str, grace_s: float) -> uvicorn.Config:
    """The HTTP server's settings; tests/api_bench.py serves its bare app with them too."""
    host, port = split_host_port(http_addr)
    # log_config=None keeps our JSON logging for uvicorn's own records.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # httptools parses HTTP/1.1 in C; uvicorn's default pure-Python h11
        # took a fifth of the gateway's CPU per request (tests/api_bench.py).
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        # Nothing reads the client address, so X-Forwarded-* need no parsing.
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(grace_s),
    )


async def serve() -> None:
    settings = GatewaySettings.from_env()
    # Channels are made inside the running loop that will use them.
    backends = connect(settings)
    # In the background: the API serves while NATS is down, waits then run their full time.
    notices = JobNotices(settings.nats_url)
    notices.start()
    try:
        app = create_app(settings, backends, notices=notices)
        config = server_config(app, settings.http_addr, settings.shutdown_grace_s)
        # The default registry, which the HTTP middleware and the waiters fill.
        serve_metrics(settings.metrics_addr)
        settle_after_startup()
        log.info(
            "listening",
            extra={"fields": {"http": settings.http_addr, "metrics": settings.metrics_addr}},
        )
        # Requests waiting on `Prefer: wait` answer now rather than at the grace period's end.
        await Server(config, on_exit=app.state.job_waiters.close).serve()
    finally:
        await notices.close()
        await backends.close()
        log.info("stopped")


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop, whose event loop (libuv) costs less per request than asyncio's."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def main() -> None:
    setup_logging("gateway")
    run(serve())


if __name__ == "__main__":
    main()
