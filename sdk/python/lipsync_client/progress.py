"""Progress bars of the `lipsync` command: uploads, the job's stage and percent, the download.

Drawn on stderr only when it is a terminal and `--json` is off, so pipes
and scripts get clean output. With `rich` installed (`pip install
lipsync-client[cli]`) the bars are rich's; without it, one plain line per
bar is redrawn with a carriage return. Either way the calls are the same:
`upload`, `job` and `download` are the SDK's progress callbacks.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Protocol

from lipsync_client.models import JobData

BAR_WIDTH = 30


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def job_line(job: JobData) -> tuple[str, int, str]:
    """(label, percent, extra) of a job: its stage, percent and ETA."""
    if job.done:
        return f"job {job.status}", 100 if job.status == "completed" else 0, ""
    progress = job.progress
    if progress is None:
        return "job queued", 0, ""
    eta = f"ETA {progress.eta_seconds} s" if progress.eta_seconds is not None else "ETA ?"
    return f"job {progress.stage}", progress.percent, eta


class Display(Protocol):
    def upload(self, name: str, sent: int, total: int | None) -> None: ...
    def job(self, job: JobData) -> None: ...
    def download(self, written: int, total: int | None) -> None: ...
    def close(self) -> None: ...


class NoDisplay:
    """No terminal, or --json: nothing is drawn."""

    def upload(self, name: str, sent: int, total: int | None) -> None:
        pass

    def job(self, job: JobData) -> None:
        pass

    def download(self, written: int, total: int | None) -> None:
        pass

    def close(self) -> None:
        pass


class PlainDisplay:
    """One redrawn line per bar, ended with a newline when the bar is done or replaced."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._key: str | None = None
        self._last_draw = 0.0

    def _draw(self, key: str, label: str, fraction: float | None, extra: str, final: bool) -> None:
        now = time.monotonic()
        if key == self._key and not final and now - self._last_draw < 0.1:
            return
        if self._key is not None and key != self._key:
            self._stream.write("\n")
        self._key, self._last_draw = key, now
        if fraction is None:
            bar = " " * BAR_WIDTH
            percent = "   "
        else:
            filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            percent = f"{round(fraction * 100):3d}%"
        self._stream.write(f"\r{label:<24.24} [{bar}] {percent} {extra:<20}")
        if final:
            self._stream.write("\n")
            self._key = None
        self._stream.flush()

    def upload(self, name: str, sent: int, total: int | None) -> None:
        fraction = sent / total if total else None
        self._draw(
            f"upload {name}",
            f"upload {name}",
            fraction,
            _human_bytes(sent),
            total is not None and sent >= total,
        )

    def job(self, job: JobData) -> None:
        label, percent, extra = job_line(job)
        self._draw("job", label, percent / 100, extra, job.done)

    def download(self, written: int, total: int | None) -> None:
        fraction = written / total if total else None
        done = total is not None and written >= total
        self._draw("download", "download", fraction, _human_bytes(written), done)

    def close(self) -> None:
        if self._key is not None:
            self._stream.write("\n")
            self._stream.flush()
            self._key = None


class RichDisplay:
    """rich's bars, one task per upload, one for the job, one for the download."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[extra]}"),
            console=Console(file=stream),
        )
        self._tasks: dict[str, Any] = {}
        self._started = False

    def _show(self, key: str, description: str, total: float | None, done: int, extra: str) -> None:
        if not self._started:
            # Started with the first bar, so commands without one draw nothing.
            self._progress.start()
            self._started = True
        task = self._tasks.get(key)
        if task is None:
            self._tasks[key] = self._progress.add_task(
                description, total=total, completed=done, extra=extra
            )
        else:
            self._progress.update(task, description=description, completed=done, extra=extra)

    def upload(self, name: str, sent: int, total: int | None) -> None:
        self._show(f"upload {name}", f"upload {name}", total, sent, _human_bytes(sent))

    def job(self, job: JobData) -> None:
        label, percent, extra = job_line(job)
        self._show("job", label, 100, percent, extra)

    def download(self, written: int, total: int | None) -> None:
        self._show("download", "download", total, written, _human_bytes(written))

    def close(self) -> None:
        if self._started:
            self._progress.stop()
            self._started = False


def make_display(enabled: bool, stream: IO[str] | None = None) -> Display:
    """The bars to draw: none unless enabled and `stream` (stderr) is a terminal."""
    out = stream if stream is not None else sys.stderr
    if not enabled or not out.isatty():
        return NoDisplay()
    try:
        return RichDisplay(out)
    except ImportError:
        return PlainDisplay(out)
