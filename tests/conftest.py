"""Fixtures shared by every test package."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.devstack import nats_server_binary, wait_for_port
from tests.integration.harness import free_port


class NatsProcess:
    """A real nats-server with JetStream on a free port, which a test may stop and start
    again on the same port and store."""

    def __init__(self, store_dir: Path) -> None:
        self.port = free_port()
        self.store_dir = store_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                *("--addr", "127.0.0.1", "--port", str(self.port)),
                *("--jetstream", "--store_dir", str(self.store_dir)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port("127.0.0.1", self.port, 10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def restartable_nats(tmp_path: Path) -> Iterator[NatsProcess]:
    server = NatsProcess(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_server(restartable_nats: NatsProcess) -> str:
    """A real nats-server with JetStream on a free port; its URL."""
    return restartable_nats.url
