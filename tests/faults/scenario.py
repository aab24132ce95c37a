"""The fault suite's workload: jobs in waves, faults on a timeline, cancels at random moments.

Three threads work against the stack at once, as customers and bad luck would:

* the submitter sends a wave of jobs every `WAVE_EVERY_S` (a mix of models,
  of webhook receivers and of none; half with an `Idempotency-Key`), and
  retries what the API refuses as temporarily unavailable (503), as a client
  should; a 503 must mean that no job exists, which the checks verify;
* the chaos thread runs `FaultRun.timeline`: the worker SIGKILLed while it
  renders, job_service and billing_service SIGKILLed and SIGTERMed,
  nats-server killed and held down (with a cancel sent meanwhile), the flaky
  receiver's port closed and reopened, stored events replayed duplicated and
  out of order;
* the canceller cancels jobs while they are queued, downloading from the
  trickling host, rendering, or already ended (`409 job_finished`).

A poller reads every unfinished job once a second, and the run ends when
every job has ended or the deadline passes; `tests/faults/checks.py` judges.
An exception in any of the threads (an unexpected answer, say) is kept in
`errors`, which the test reports as a failure.
"""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.faults.event_watch import EventWatch
from tests.faults.receivers import HangingReceiver, WebhookReceiver
from tests.faults.stack_control import StackControl
from tests.integration.harness import bearer, ctl

# Faults end at about 67 s; the last waves run on a calm stack.
WAVES = 16
# About 0.9 jobs/s: below what the worker finishes on 2 cores, so that the queue
# drains between waves and dispatch latency measures the platform, not a backlog.
WAVE_EVERY_S = 7.0
JOBS_PER_WAVE = 6
# Credits for a few jobs only: the rest of that account's jobs fail as insufficient.
TIGHT_CREDITS = 30
TIGHT_JOBS = 6
# What a worker needs for one job at most, with the redeliveries of its kills.
JOB_DEADLINE_S = 240.0

# Shapes of job: the media they use (see FaultMedia) and how long they render.
SHAPES = ("image", "video", "multi", "long", "image", "trickle", "image")
RECEIVERS = ("steady", "flaky", "", "steady", "hanging", "", "steady", "flaky", "")


@dataclass(frozen=True)
class Account:
    id: str
    key: str
    granted: int


@dataclass
class Job:
    id: str
    account: Account
    shape: str
    receiver: str  # a receiver's name, "" for a job without webhook
    submitted_at: float
    refused: int  # 503 answers before the 202
    final: dict[str, Any] | None = None
    ended_seen_at: float | None = None


@dataclass
class Cancel:
    job_id: str
    moment: str  # what the suite saw of the job when it asked: queued, rendering, ...
    at: float
    status_code: int
    code: str = ""  # the problem's code on a 4xx
    answer_status: str = ""  # the job object's status in a 200 answer
    canceled_read_at: float | None = None  # when GET first read `canceled`
    final_status: str = ""
    # The worker's last sign of the job (a progress notice or a log line) and what it logged.
    worker_last_at: float | None = None
    worker_last_msg: str = ""


@dataclass
class FaultMedia:
    """Base URLs of the media: `normal` serves at full speed, `trickle` at 1 byte/s."""

    normal: str
    trickle: str

    def form_state(self, shape: str) -> tuple[str, dict[str, Any]]:
        short = f"{self.normal}/speech-1.5s.wav"
        if shape == "video":
            return "lipsync-video", {"video": f"{self.normal}/talking.mp4", "audio": short}
        if shape == "multi":
            return "lipsync-image-multi", {
                "image": f"{self.normal}/two-faces.jpg",
                "left_audio": short,
                "right_audio": short,
            }
        if shape == "long":
            # Renders for a few seconds: the target of mid-render kills and cancels.
            return "lipsync-image", {
                "image": f"{self.normal}/portrait.jpg",
                "audio": f"{self.normal}/speech-6s.wav",
                "resolution": "720p",
            }
        if shape == "trickle":
            return "lipsync-image", {
                "image": f"{self.normal}/portrait.jpg",
                "audio": f"{self.trickle}/speech-1.5s.wav",
            }
        return "lipsync-image", {"image": f"{self.normal}/portrait.jpg", "audio": short}


@dataclass
class FaultRun:
    env: dict[str, str]
    http_url: str
    control: StackControl
    watch: EventWatch
    media: FaultMedia
    receivers: dict[str, WebhookReceiver | HangingReceiver]
    rng: random.Random
    accounts: list[Account] = field(default_factory=list)
    tight: Account | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    cancels: list[Cancel] = field(default_factory=list)
    # Set when the cancel endpoint answered as a route that does not exist.
    cancel_missing: str = ""
    refused_402: int = 0
    refused_503: int = 0
    replayed_events: int = 0
    kills_mid_render: int = 0
    timeline_log: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _waves_done: threading.Event = field(default_factory=threading.Event)
    _faults_done: threading.Event = field(default_factory=threading.Event)
    # Set once nothing submits any more (waves and canceller both over).
    _submitting_done: threading.Event = field(default_factory=threading.Event)

    # -- accounts ---------------------------------------------------------------------------

    def open_accounts(self, count: int, credits: int) -> None:
        for _ in range(count):
            self.accounts.append(self._account(credits))
        self.tight = self._account(TIGHT_CREDITS)

    def _account(self, credits: int) -> Account:
        email = f"fault-{uuid.uuid4().hex[:12]}@example.com"
        account_id = ctl(self.env, "account", "create", "--email", email)["account_id"]
        key = ctl(self.env, "key", "create", "--account", account_id, "--name", "faults")["key"]
        ctl(
            self.env,
            *("credits", "grant", "--account", account_id),
            *("--amount", str(credits), "--reason", "fault suite"),
        )
        return Account(account_id, key, credits)

    # -- submitting -------------------------------------------------------------------------

    def submit(self, account: Account, shape: str, receiver: str) -> Job | None:
        """Create a job as a careful client would: retry 503s, with or without a key."""
        model, form_state = self.media.form_state(shape)
        body: dict[str, Any] = {"formState": form_state}
        if receiver:
            body["webhook"] = self.receivers[receiver].url
        headers = bearer(account.key)
        if self.rng.random() < 0.5:
            headers["idempotency-key"] = str(uuid.uuid4())
        refused = 0
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.http_url, timeout=30) as client:
            while True:
                try:
                    response = client.post(f"/api/v1/{model}", json=body, headers=headers)
                except httpx.TransportError:
                    status = 0
                else:
                    status = response.status_code
                if status == 202:
                    break
                if status == 402:
                    with self._lock:
                        self.refused_402 += 1
                    return None
                if status not in (0, 429, 502, 503, 504) or time.monotonic() > deadline:
                    raise AssertionError(f"submit answered {status}: {response.text[:300]}")
                refused += status == 503
                time.sleep(1.0)
        job = Job(response.json()["id"], account, shape, receiver, time.time(), refused)
        with self._lock:
            self.jobs[job.id] = job
            self.refused_503 += refused
        return job

    def run_waves(self) -> None:
        assert self.tight is not None
        tight = self.tight
        with ThreadPoolExecutor(max_workers=JOBS_PER_WAVE) as pool:
            # The tight account's jobs all at once: each passes the gateway's balance
            # check before any is reserved, so billing's Reserve must refuse the rest.
            list(pool.map(lambda _: self.submit(tight, "image", "steady"), range(TIGHT_JOBS)))
            for wave in range(WAVES):
                due = self.started_at + wave * WAVE_EVERY_S
                time.sleep(max(0.0, due - time.time()))
                picks = [
                    (
                        self.accounts[(wave + index) % len(self.accounts)],
                        SHAPES[(wave * JOBS_PER_WAVE + index) % len(SHAPES)],
                        RECEIVERS[(wave * JOBS_PER_WAVE + index) % len(RECEIVERS)],
                    )
                    for index in range(JOBS_PER_WAVE)
                ]
                list(pool.map(lambda pick: self.submit(*pick), picks))
        self._waves_done.set()

    # -- faults -----------------------------------------------------------------------------

    def log(self, what: str) -> None:
        self.timeline_log.append((round(time.time() - self.started_at, 1), what))

    def rendering_job(self, timeout_s: float, only: Job | None = None) -> Job | None:
        """A long job (or `only`) that a worker renders now, waiting up to `timeout_s` for one."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.time()
            with self._lock:
                candidates = (
                    [only] if only else [j for j in self.jobs.values() if j.shape == "long"]
                )
            for job in candidates:
                seen = self.watch.snapshot(job.id)
                if seen.ended():
                    continue
                started = seen.started_at()
                last_progress = seen.last_progress_at()
                if last_progress is None:
                    # Without progress notices, a long job renders a second after it started.
                    if started is not None and now - started > 1.0:
                        return job
                # Rendering now, and by a live worker (not one just killed).
                elif seen.progress[-1][1] == "rendering" and now - last_progress < 1.5:
                    return job
            time.sleep(0.1)
        return None

    def kill_worker_mid_render(self) -> None:
        job = self.rendering_job(timeout_s=12)
        if job is not None:
            self.kills_mid_render += 1
        self.control.kill("inference_service", signal.SIGKILL, "SIGKILL worker mid-render")
        self.log(f"SIGKILL inference_service (rendering {job.id[:8] if job else 'nothing'})")

    def replay_events(self) -> None:
        stored = self.watch.stored_events()
        sent = self.watch.replay(stored, self.rng)
        self.replayed_events += sent
        self.log(f"replayed {sent} stored events, duplicated and shuffled")

    def timeline(self) -> list[tuple[float, Callable[[], None]]]:
        c = self.control
        flaky = self.receivers["flaky"]
        assert isinstance(flaky, WebhookReceiver)

        def receiver_down() -> None:
            flaky.stop()
            self.log("flaky receiver down (port closed)")

        def receiver_up() -> None:
            flaky.start()
            self.log("flaky receiver up")

        def kill(name: str, sig: signal.Signals) -> Callable[[], None]:
            def run() -> None:
                c.kill(name, sig)
                self.log(f"{sig.name} {name}")

            return run

        def nats_down() -> None:
            c.hold_down("nats-server", 4.0)
            self.log("nats-server SIGKILL, down 4 s, then restarted on its port and store")
            # A cancel while NATS is down: a 200 must still end the job canceled and
            # released (job_service cannot publish `canceled` until NATS is back).
            threading.Thread(target=cancel_while_nats_is_down, daemon=True).start()

        def cancel_while_nats_is_down() -> None:
            time.sleep(1.0)
            with self._lock:
                open_jobs = [job for job in self.jobs.values() if job.final is None]
            if open_jobs:
                cancel = self.cancel(self.rng.choice(open_jobs), "nats-down")
                self.log(f"cancel while NATS is down: {cancel.status_code if cancel else 'none'}")

        return [
            (4, self.kill_worker_mid_render),
            (10, receiver_down),
            (14, kill("job_service", signal.SIGKILL)),
            (20, kill("billing_service", signal.SIGTERM)),
            (25, self.kill_worker_mid_render),
            (31, receiver_up),
            (33, self.replay_events),
            (39, nats_down),
            (49, kill("job_service", signal.SIGTERM)),
            (55, kill("billing_service", signal.SIGKILL)),
            (60, self.kill_worker_mid_render),
            (66, self.replay_events),
        ]

    def run_timeline(self) -> None:
        for offset, action in self.timeline():
            time.sleep(max(0.0, self.started_at + offset - time.time()))
            action()
        self._faults_done.set()

    # -- cancels ----------------------------------------------------------------------------

    def cancel(self, job: Job, moment: str) -> Cancel | None:
        with httpx.Client(base_url=self.http_url, timeout=30) as client:
            at = time.time()
            try:
                response = client.post(
                    f"/api/v1/jobs/{job.id}/cancel", headers=bearer(job.account.key)
                )
            except httpx.TransportError:
                return None
            if response.status_code in (404, 405) and "code" not in response.text:
                # A route that does not exist answers FastAPI's bare 404/405.
                self.cancel_missing = f"POST /api/v1/jobs/{{id}}/cancel answers {response}"
                return None
            if response.status_code == 503:
                return None  # job_service is down: nothing was asked
            body = response.json()
            cancel = Cancel(
                job.id,
                moment,
                at,
                response.status_code,
                code=str(body.get("code", "")) if response.status_code != 200 else "",
                answer_status=str(body.get("status", "")) if response.status_code == 200 else "",
            )
            if response.status_code == 200:
                cancel.canceled_read_at = self._read_until_ended(client, job, at)
        with self._lock:
            self.cancels.append(cancel)
        return cancel

    def _read_until_ended(self, client: httpx.Client, job: Job, since: float) -> float | None:
        """When the job first reads anything but `processing` (up to 15 s after the cancel)."""
        while time.time() - since < 15:
            try:
                response = client.get(f"/api/v1/jobs/{job.id}", headers=bearer(job.account.key))
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                if response.json()["status"] != "processing":
                    return time.time()
            time.sleep(0.1)
        return None

    def run_canceller(self) -> None:
        moments = ("queued", "rendering", "ended", "downloading", "rendering", "any")
        turn = 0
        time.sleep(3)
        while not self._waves_done.is_set() and not self.cancel_missing:
            moment = moments[turn % len(moments)]
            turn += 1
            if self._faults_done.is_set() and turn % 4:
                # On the calm stack, time a cancel of a running render as often as can be.
                moment = "rendering"
            self._cancel_once(moment)
            time.sleep(self.rng.uniform(1.5, 3.5))

    def _cancel_once(self, moment: str) -> None:
        account = self.rng.choice(self.accounts)
        if moment == "queued":
            job = self.submit(account, "long", self.rng.choice(("steady", "")))
            if job is not None:
                self.cancel(job, moment)
        elif moment == "rendering" and self._faults_done.is_set():
            # On the calm stack: a render of its own, canceled once it is under way.
            job = self.submit(account, "long", self.rng.choice(("steady", "")))
            if job is not None and self.rendering_job(timeout_s=10, only=job) is not None:
                time.sleep(self.rng.uniform(0.0, 1.0))
                self.cancel(job, moment)
        elif moment == "rendering":
            job = self.rendering_job(timeout_s=6)
            if job is not None:
                self.cancel(job, moment)
        elif moment == "downloading":
            job = self.submit(account, "trickle", "steady")
            if job is not None:
                time.sleep(2.0)  # the worker is reading the trickling input by now
                self.cancel(job, moment)
        elif moment == "ended":
            with self._lock:
                ended = [job for job in self.jobs.values() if job.final is not None]
            if ended:
                self.cancel(self.rng.choice(ended), moment)
        else:
            with self._lock:
                recent = [job for job in self.jobs.values() if time.time() - job.submitted_at < 8]
            if recent:
                self.cancel(self.rng.choice(recent), moment)

    # -- waiting for the end ----------------------------------------------------------------

    def poll_until_ended(self, deadline: float) -> None:
        """Read unfinished jobs once a second until all ended, the waves are over, or deadline."""
        with httpx.Client(base_url=self.http_url, timeout=30) as client:
            while time.time() < deadline:
                with self._lock:
                    open_jobs = [job for job in self.jobs.values() if job.final is None]
                if not open_jobs and self._submitting_done.is_set():
                    return
                for job in open_jobs:
                    try:
                        response = client.get(
                            f"/api/v1/jobs/{job.id}", headers=bearer(job.account.key)
                        )
                    except httpx.TransportError:
                        continue
                    if response.status_code == 200 and response.json()["status"] != "processing":
                        job.final = response.json()
                        job.ended_seen_at = time.time()
                time.sleep(1.0)

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as error:
                self.errors.append(f"{target.__name__}: {type(error).__name__}: {error}")
                self._waves_done.set()  # so that the canceller and the poller stop too

        return run

    def run(self) -> None:
        """Waves, faults and cancels at once; returns once every job ended or the deadline."""
        self.started_at = time.time()
        threads = [
            threading.Thread(target=self._guarded(self.run_waves), name="waves", daemon=True),
            threading.Thread(target=self._guarded(self.run_timeline), name="chaos", daemon=True),
            threading.Thread(target=self._guarded(self.run_canceller), name="cancels", daemon=True),
        ]
        for thread in threads:
            thread.start()

        def submitting_done() -> None:
            threads[0].join()
            threads[2].join()
            self._submitting_done.set()

        threading.Thread(target=submitting_done, daemon=True).start()
        self.poll_until_ended(deadline=self.started_at + WAVES * WAVE_EVERY_S + JOB_DEADLINE_S)
        for thread in threads:
            thread.join(60)
