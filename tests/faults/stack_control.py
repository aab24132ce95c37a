"""Kills parts of the running stack and lets `Stack.supervise` bring them back.

A supervisor thread calls `Stack.supervise()` every 0.2 s, exactly as
`make run` does, so every restart in the suite goes through the code that
operators rely on (backoff included). `hold_down` pauses it, which is how
nats-server stays down for a while before it is started again on the same
port and store directory (the supervisor reuses the child's argv).

Every fault is logged with a window, from the kill until `settle_s` after
the process is back: figures that a fault distorts (dispatch latency,
webhook delay) are taken only from jobs that no window touched.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

from lipsync_common.devstack import Stack

# After a restart, time for the process to be ready and catch up.
SETTLE_S = 6.0


@dataclass
class Fault:
    what: str  # "SIGKILL inference_service", "NATS down 4 s", ...
    process: str
    began: float  # time.time()
    ended: float | None = None  # when the process was seen running again

    def window(self) -> tuple[float, float]:
        end = self.ended if self.ended is not None else time.time()
        return self.began, end + SETTLE_S


class StackControl:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.faults: list[Fault] = []
        self.records: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._held_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                if time.monotonic() < self._held_until:
                    continue
                for record in self.stack.supervise():
                    self.records.append({**record, "at": time.time()})
                    if record["msg"] == "process restarted":
                        for fault in self.faults:
                            if fault.process == record["process"] and fault.ended is None:
                                fault.ended = time.time()

    def pid(self, name: str) -> int:
        with self._lock:
            return next(p.pid for n, p in self.stack.children if n == name)

    def kill(self, name: str, sig: signal.Signals, what: str = "") -> Fault:
        """Send `sig` to the child `name`; the supervisor restarts it once it is dead."""
        with self._lock:
            process = next(p for n, p in self.stack.children if n == name)
            fault = Fault(what or f"{sig.name} {name}", name, time.time())
            self.faults.append(fault)
            process.send_signal(sig)
        return fault

    def hold_down(self, name: str, down_s: float) -> Fault:
        """SIGKILL `name` and keep it down for `down_s` before the supervisor restarts it."""
        with self._lock:
            self._held_until = time.monotonic() + down_s
        fault = self.kill(name, signal.SIGKILL, f"{name} down {down_s:.0f} s (SIGKILL)")
        return fault

    def touched(self, start: float, end: float, processes: set[str] | None = None) -> bool:
        """Whether a fault (of one of `processes`, default any) overlaps [start, end]."""
        for fault in self.faults:
            if processes is not None and fault.process not in processes:
                continue
            began, settled = fault.window()
            if began <= end and start <= settled:
                return True
        return False

    def restarts(self) -> int:
        return sum(1 for record in self.records if record["msg"] == "process restarted")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
