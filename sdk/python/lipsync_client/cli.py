"""`lipsync`: the customer's command line (`lipsyncctl` stays the operator's).

    lipsync image face.jpg voice.wav -o out.mp4 [--resolution 720p] [--seed N] ...
    lipsync video clip.mp4 voice.wav -o out.mp4
    lipsync multi two.jpg left.wav right.wav --order meanwhile -o out.mp4
    lipsync jobs list|get|wait|cancel|delete ...
    lipsync estimate image face.jpg voice.wav
    lipsync balance | usage

Exit codes (EXIT_* below): 0 success; 1 the job failed or was canceled (its
error printed); 2 a usage error (bad arguments, no API key, a missing local
file); 3 the API refused the request (authentication, credits, validation,
not found, conflict); 4 network or server trouble that outlived the retries;
130 interrupted with Ctrl-C. `--json` prints exactly one JSON value on stdout
for every command, errors included (`{"error": {...}}`), and never draws a
bar. Ctrl-C while a job runs asks whether to cancel it (`--cancel-on-interrupt`
cancels without asking); a download cut short leaves no file behind.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lipsync_client import __version__
from lipsync_client.client import Client, Job
from lipsync_client.errors import (
    APIConnectionError,
    APIError,
    ConfigurationError,
    ConflictError,
    DownloadError,
    LipsyncError,
)
from lipsync_client.mp4 import duration_seconds
from lipsync_client.progress import Display, make_display

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_NETWORK = 4
EXIT_INTERRUPTED = 130

RESOLUTIONS = ("480p", "720p")
ORDERS = ("left_right", "right_left", "meanwhile")
STATUSES = ("processing", "completed", "failed", "canceled")
MODELS = ("lipsync-video", "lipsync-image", "lipsync-image-multi")


class CommandError(Exception):
    """Ends the command with a message and an exit code."""

    def __init__(self, message: str, code: int, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data or {"message": message}


class Command:
    """One run of the command: its arguments, its output and its client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json: bool = args.json
        self._client: Client | None = None
        self.display: Display = make_display(not self.json)
        # The job this run submitted or waits for, and where its download goes while it runs.
        self.job: Job | None = None
        self.downloading_to: Path | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                api_key=self.args.api_key,
                base_url=self.args.base_url,
                timeout=self.args.timeout,
                max_retries=self.args.max_retries,
            )
        return self._client

    def close(self) -> None:
        self.display.close()
        if self._client is not None:
            self._client.close()

    def out(self, data: Any, text: str) -> None:
        """The command's result: JSON with --json, else the text."""
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True))
        elif text:
            print(text)

    def note(self, text: str) -> None:
        """A remark for a person, on stderr; scripts (--json) get none."""
        if not self.json:
            print(text, file=sys.stderr, flush=True)


# Running jobs.


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "resolution": args.resolution,
        "mask_image": args.mask,
        "prompt": args.prompt,
        "seed": args.seed,
        "webhook": args.webhook,
    }


def run_job(cmd: Command, create: Callable[[Client], Job]) -> int:
    if not cmd.args.no_wait and cmd.args.output is None:
        raise CommandError(
            "say where to save the video with -o out.mp4 (or pass --no-wait)", EXIT_USAGE
        )
    cmd.job = create(cmd.client)
    cmd.note(f"job {cmd.job.id} submitted")
    if cmd.args.no_wait:
        cmd.out(cmd.job.raw, cmd.job.id)
        return EXIT_OK
    return finish(cmd, cmd.job)


def finish(cmd: Command, job: Job) -> int:
    """Wait for the job, download it, print the summary (Ctrl-C: see on_interrupt)."""
    job.wait(on_progress=cmd.display.job)
    if job.status != "completed":
        cmd.display.close()
        message = f"job {job.id} {job.status}" + (f": {job.error}" if job.error else "")
        if cmd.json:
            cmd.out(job.raw, "")
        else:
            print(message, file=sys.stderr)
        return EXIT_JOB_FAILED
    data: dict[str, Any] = dict(job.raw)
    output: Path | None = cmd.args.output
    if output is not None:
        cmd.downloading_to = output
        path = job.download(output, on_progress=cmd.display.download)
        cmd.downloading_to = None
        data["file"] = str(path)
        data["durationSeconds"] = duration_seconds(path)
    cmd.display.close()
    cmd.out(data, summary(job, data))
    return EXIT_OK


def summary(job: Job, data: dict[str, Any]) -> str:
    lines = [str(data.get("file") or job.output)]
    if data.get("durationSeconds") is not None:
        lines.append(f"  duration        {data['durationSeconds']:.2f} s")
    lines.append(f"  credits         {job.credits if job.credits is not None else '?'}")
    if job.execution_time is not None:
        lines.append(f"  execution time  {job.execution_time / 1000:.2f} s")
    lines.append(f"  job             {job.id}")
    return "\n".join(lines)


def on_interrupt(cmd: Command) -> int:
    """Ctrl-C, wherever it came: a running job is canceled if asked to, a download leaves nothing.

    One handler in `main` rather than one around each wait, so that no window
    between submitting and waiting can lose the question.
    """
    cmd.display.close()
    job = cmd.job
    if job is None or job.done:
        if cmd.downloading_to is not None and job is not None:
            cmd.note(
                "download interrupted, nothing written; the job stays completed:"
                f" lipsync jobs wait {job.id} -o {cmd.downloading_to}"
            )
        else:
            cmd.note("interrupted")
        return EXIT_INTERRUPTED
    try:
        cancel = cmd.args.cancel_on_interrupt or ask(f"cancel job {job.id}? [y/N] ")
        if cancel:
            job.cancel()
            cmd.note(f"job {job.id} canceled; nothing is charged")
            if cmd.json:
                cmd.out(job.raw, "")
            return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        pass
    except ConflictError:
        # It ended between the last read and the cancel: its result is there to fetch.
        cmd.note(f"job {job.id} had already ended: lipsync jobs wait {job.id} -o out.mp4")
        return EXIT_INTERRUPTED
    except LipsyncError as error:
        cmd.note(f"could not cancel job {job.id}: {error}")
    cmd.note(f"job {job.id} keeps running: lipsync jobs wait {job.id} -o out.mp4")
    return EXIT_INTERRUPTED


def ask(question: str) -> bool:
    """A yes from a person at a terminal; no terminal, no answer, or a second Ctrl-C is a no."""
    if not sys.stdin.isatty() or not sys.stderr.isatty():
        return False
    try:
        sys.stderr.write("\n" + question)
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except (KeyboardInterrupt, EOFError):
        return False


def cmd_image(cmd: Command) -> int:
    a = cmd.args
    return run_job(
        cmd,
        lambda c: c.lipsync_image(a.face, a.audio, on_upload=cmd.display.upload, **_job_options(a)),
    )


def cmd_video(cmd: Command) -> int:
    a = cmd.args
    return run_job(
        cmd,
        lambda c: c.lipsync_video(
            a.video, a.audio, on_upload=cmd.display.upload, **_job_options(a)
        ),
    )


def cmd_multi(cmd: Command) -> int:
    a = cmd.args
    return run_job(
        cmd,
        lambda c: c.lipsync_image_multi(
            a.image, a.left, a.right, order=a.order, on_upload=cmd.display.upload, **_job_options(a)
        ),
    )


# Jobs.


def _job_text(job: Job) -> str:
    lines = [f"{'id':<15} {job.id}", f"{'model':<15} {job.model}", f"{'status':<15} {job.status}"]
    if job.progress is not None:
        eta = job.progress.eta_seconds
        lines.append(
            f"{'progress':<15} {job.progress.stage} {job.progress.percent}%"
            + (f", ETA {eta} s" if eta is not None else "")
        )
    for label, value in (
        ("output", job.output),
        ("error", job.error),
        ("credits", job.credits),
        ("execution time", f"{job.execution_time} ms" if job.execution_time is not None else None),
        ("created", job.created_at),
        ("deleted", job.deleted_at),
    ):
        if value not in (None, ""):
            lines.append(f"{label:<15} {value}")
    return "\n".join(lines)


def cmd_jobs_list(cmd: Command) -> int:
    a = cmd.args
    jobs = list(cmd.client.jobs.list(status=a.status, model=a.model, limit=a.limit))
    rows = [
        f"{job.id}  {job.model:<19} {job.status:<10} {job.created_at or '':<27}"
        f" {job.credits if job.credits is not None else '-'}"
        for job in jobs
    ]
    cmd.out({"data": [job.raw for job in jobs]}, "\n".join(rows) if rows else "no jobs")
    return EXIT_OK


def cmd_jobs_get(cmd: Command) -> int:
    job = cmd.client.jobs.get(cmd.args.id)
    cmd.out(job.raw, _job_text(job))
    return EXIT_OK


def cmd_jobs_wait(cmd: Command) -> int:
    cmd.job = cmd.client.jobs.get(cmd.args.id)
    return finish(cmd, cmd.job)


def cmd_jobs_cancel(cmd: Command) -> int:
    job = cmd.client.jobs.cancel(cmd.args.id)
    cmd.out(job.raw, f"job {job.id} {job.status}")
    return EXIT_OK


def cmd_jobs_delete(cmd: Command) -> int:
    cmd.client.jobs.delete(cmd.args.id)
    cmd.out({"id": cmd.args.id, "deleted": True}, f"job {cmd.args.id} deleted")
    return EXIT_OK


# Account.


def cmd_estimate(cmd: Command) -> int:
    a = cmd.args
    media: dict[str, str] = {}
    if a.model == "lipsync-image":
        media = {"image": a.face, "audio": a.audio}
    elif a.model == "lipsync-video":
        media = {"video": a.video, "audio": a.audio}
    else:
        media = {"image": a.image, "left_audio": a.left, "right_audio": a.right}
    form: dict[str, Any] = {"resolution": a.resolution}
    if a.model == "lipsync-image-multi":
        form["order"] = a.order
    estimate = cmd.client.estimate(
        a.model,
        on_upload=cmd.display.upload,
        **media,
        **{name: value for name, value in form.items() if value is not None},
    )
    cmd.display.close()
    cmd.out(
        {"billed_seconds": estimate.billed_seconds, "credits": estimate.credits},
        f"{estimate.credits} credits ({estimate.billed_seconds} billed seconds)",
    )
    return EXIT_OK


def cmd_balance(cmd: Command) -> int:
    balance = cmd.client.balance()
    cmd.out(
        {"api_credits": balance.api_credits, "user_credits": balance.user_credits},
        f"API credits  {balance.api_credits}\nweb credits  {balance.user_credits}",
    )
    return EXIT_OK


def cmd_usage(cmd: Command) -> int:
    entries = list(cmd.client.usage(limit=cmd.args.limit))
    rows = [
        f"{e.created_at:<27} {e.kind:<8} {e.credits:>6} {e.job_id or '':<36} {e.reason}"
        for e in entries
    ]
    cmd.out({"data": [e.raw for e in entries]}, "\n".join(rows) if rows else "no usage yet")
    return EXIT_OK


# Arguments.


class Parser(argparse.ArgumentParser):
    """argparse, exiting with EXIT_USAGE (its own 2) and a hint to --help."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    parent = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        # Given after the command, an option must not be reset by the command's defaults.
        return argparse.SUPPRESS if suppress else value

    parent.add_argument(
        "--json", action="store_true", default=default(False), help="print only JSON on stdout"
    )
    parent.add_argument(
        "--api-key", default=default(None), help="API key (default: $LIPSYNC_API_KEY)"
    )
    parent.add_argument(
        "--base-url",
        default=default(None),
        help="API address (default: $LIPSYNC_BASE_URL, else http://127.0.0.1:8080)",
    )
    parent.add_argument(
        "--timeout", type=float, default=default(30.0), help="seconds per request (default 30)"
    )
    parent.add_argument(
        "--max-retries",
        type=int,
        default=default(2),
        help="retries of a request on network errors, 429 and 5xx (default 2)",
    )
    return parent


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, help="where to save the MP4")
    parser.add_argument("--resolution", choices=RESOLUTIONS, help="output height (default 480p)")
    parser.add_argument("--seed", type=int, help="same seed, same inputs: same video")
    parser.add_argument("--mask", help="mask image (URL or file): white where lips may change")
    parser.add_argument("--prompt", help="style guidance, at most 2,000 characters")
    parser.add_argument("--webhook", help="https URL that receives the finished job")
    parser.add_argument(
        "--no-wait", action="store_true", help="print the job id and return at once"
    )
    parser.add_argument(
        "--cancel-on-interrupt",
        action="store_true",
        help="on Ctrl-C, cancel the job without asking",
    )


def build_parser() -> argparse.ArgumentParser:
    common = _common(suppress=True)
    parser = Parser(
        prog="lipsync",
        description="Lip-sync videos from the command line. Media may be URLs or local files"
        " (uploaded first). Exit codes: 0 ok, 1 job failed or canceled, 2 usage,"
        " 3 refused by the API, 4 network or server error, 130 interrupted.",
        parents=[_common(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    def add(
        group: Any, name: str, handler: Callable[[Command], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, help=help_text, description=help_text, parents=[common]
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = add(commands, "image", cmd_image, "a talking video from one portrait and one audio")
    sub.add_argument("face", help="portrait image: URL or file")
    sub.add_argument("audio", help="speech: URL or file")
    _job_arguments(sub)

    sub = add(commands, "video", cmd_video, "re-animate the lips of a video to a new audio")
    sub.add_argument("video", help="source video: URL or file")
    sub.add_argument("audio", help="new audio: URL or file")
    _job_arguments(sub)

    sub = add(commands, "multi", cmd_multi, "a conversation of the two people of one image")
    sub.add_argument("image", help="image with two people: URL or file")
    sub.add_argument("left", help="the left person's audio")
    sub.add_argument("right", help="the right person's audio")
    sub.add_argument("--order", choices=ORDERS, help="who speaks when (default left_right)")
    _job_arguments(sub)

    jobs = commands.add_parser("jobs", help="list, read, wait for, cancel or delete jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", parser_class=Parser)
    job_commands.required = True
    sub = add(job_commands, "list", cmd_jobs_list, "your jobs, newest first")
    sub.add_argument("--status", choices=STATUSES)
    sub.add_argument("--model", choices=MODELS)
    sub.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    sub = add(job_commands, "get", cmd_jobs_get, "one job")
    sub.add_argument("id")
    sub = add(job_commands, "wait", cmd_jobs_wait, "wait for a job to end, then download it")
    sub.add_argument("id")
    sub.add_argument("-o", "--output", type=Path, help="where to save the MP4")
    sub.add_argument("--cancel-on-interrupt", action="store_true")
    sub = add(job_commands, "cancel", cmd_jobs_cancel, "cancel a job in processing")
    sub.add_argument("id")
    sub = add(job_commands, "delete", cmd_jobs_delete, "delete an ended job's output and inputs")
    sub.add_argument("id")

    estimate = commands.add_parser("estimate", help="what a job would cost (nothing is charged)")
    models = estimate.add_subparsers(dest="estimate_model", metavar="MODEL", parser_class=Parser)
    models.required = True
    sub = add(models, "image", cmd_estimate, "estimate a lipsync-image job")
    sub.set_defaults(model="lipsync-image")
    sub.add_argument("face")
    sub.add_argument("audio")
    sub.add_argument("--resolution", choices=RESOLUTIONS)
    sub = add(models, "video", cmd_estimate, "estimate a lipsync-video job")
    sub.set_defaults(model="lipsync-video")
    sub.add_argument("video")
    sub.add_argument("audio")
    sub.add_argument("--resolution", choices=RESOLUTIONS)
    sub = add(models, "multi", cmd_estimate, "estimate a lipsync-image-multi job")
    sub.set_defaults(model="lipsync-image-multi")
    sub.add_argument("image")
    sub.add_argument("left")
    sub.add_argument("right")
    sub.add_argument("--order", choices=ORDERS)
    sub.add_argument("--resolution", choices=RESOLUTIONS)

    add(commands, "balance", cmd_balance, "your API and web credits")
    sub = add(commands, "usage", cmd_usage, "credit movements, newest first")
    sub.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    return parser


def _error_data(error: BaseException) -> dict[str, Any]:
    if isinstance(error, APIError):
        return {
            "status": error.status,
            "code": error.code,
            "detail": error.detail,
            "errors": [{"field": e.field, "message": e.message} for e in error.errors],
        }
    return {"message": str(error)}


def exit_code(error: BaseException) -> int:
    """EXIT_* for an exception that ended the command."""
    if isinstance(error, APIError):
        # 429 and 5xx that outlived the retries are the server's trouble, not the request's.
        return EXIT_NETWORK if error.status == 429 or error.status >= 500 else EXIT_API
    if isinstance(error, APIConnectionError | DownloadError):
        return EXIT_NETWORK
    # No API key, a local file that is not there, an output path that cannot be written.
    if isinstance(error, ConfigurationError | OSError | ValueError):
        return EXIT_USAGE
    return EXIT_NETWORK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = Command(args)
    try:
        code: int = args.handler(cmd)
        return code
    except KeyboardInterrupt:
        return on_interrupt(cmd)
    except CommandError as error:
        return _fail(cmd, error, error.code, error.data)
    except (LipsyncError, OSError, ValueError) as error:
        return _fail(cmd, error, exit_code(error), _error_data(error))
    finally:
        cmd.close()


def _fail(cmd: Command, error: BaseException, code: int, data: dict[str, Any]) -> int:
    cmd.display.close()
    if cmd.json:
        print(json.dumps({"error": data, "exitCode": code}, indent=2, sort_keys=True))
    else:
        print(f"lipsync: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
