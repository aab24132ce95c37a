"""`python -m gateway`: serve the REST API until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import Iterator

import uvicorn

from gateway.app import create_app
from gateway.clients import connect
from gateway.settings import GatewaySettings
from lipsync_common.config import split_host_port
from lipsync_common.logs import setup_logging

log = logging.getLogger("gateway")


class Server(uvicorn.Server):
    """uvicorn's server, stopping gracefully on SIGTERM/SIGINT and then returning.

    uvicorn re-raises the signal once it has drained, which would end the process
    before the gRPC channels are closed; here the caller gets control back.
    """

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


async def serve() -> None:
    settings = GatewaySettings.from_env()
    host, port = split_host_port(settings.http_addr)
    # Channels are made inside the running loop that will use them.
    backends = connect(settings)
    try:
        app = create_app(settings, backends)
        # log_config=None keeps our JSON logging for uvicorn's own records.
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        )
        log.info("listening", extra={"fields": {"http": settings.http_addr}})
        await Server(config).serve()
    finally:
        await backends.close()
        log.info("stopped")


def main() -> None:
    setup_logging("gateway")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
