"""Schemathesis over every operation of `/openapi.json`: no input makes a 5xx.

The real stack (nats-server and all five services) is started for this test
alone. An account is opened through the API (signup, login, a key made with
the session) and given API credits with `lipsyncctl`. `schemathesis run` then
sends a few generated requests to every operation of the gateway's own schema
with `Authorization: Bearer <key>`, checking `not_a_server_error`; the
operations that answered that key only 401/403 (keys, webhook secret: they
take a session token) are run once more with the session token. The test fails
on any 5xx or transport error, when schemathesis left an operation untested,
and when the gateway's own request counter (`/metrics`) shows a 5xx or an
operation that was never called. The one 5xx allowed is the contract's own:
no payment provider is set up here, so checkout and the Stripe webhook answer
`503 payments_disabled` (checked on a well-formed request of each).

Why a network namespace: with credits, generated requests create real jobs,
so the worker downloads the media URLs schemathesis invents and job_service
POSTs to the webhooks it invents. This stack runs as production does
(`LIPSYNC_ALLOW_PRIVATE_URLS=false`), so those must be public addresses, and a
public IP literal (`https://1.2.3.4/`) needs no resolver at all: a resolver
that cannot leave the machine would not stop it, and this sandbox does route
some public addresses. So the stack, the CLI calls and schemathesis all run in
a child process inside a fresh network namespace (`unshare --net`, with
`--map-root-user` when not root) whose only interface is loopback: a request
to anything else fails at connect, which is also what makes those jobs end at
once. The child writes a summary that the test reads; it is this module run
as a program (`python -m tests.integration.test_schemathesis OUT_DIR`).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Generated cases per operation and phase; enough to reach every error path of
# the validators, few enough that the whole test stays well under a minute.
MAX_EXAMPLES = 8
SEED = 20260902
CREDITS = 1_000_000
# Bounds on a run that hangs; a normal one takes a fraction of them.
RUN_TIMEOUT_S = 120
CHILD_TIMEOUT_S = 300


def _isolation() -> list[str]:
    """The `unshare` prefix that gives a child a network namespace of its own."""
    flags = ["--net"] if os.geteuid() == 0 else ["--map-root-user", "--net"]
    return ["unshare", *flags, "--"]


def _isolation_works() -> str | None:
    """None when `unshare` works here, else why not."""
    try:
        probe = subprocess.run(
            [*_isolation(), "true"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if probe.returncode == 0 else probe.stderr.strip() or "unshare failed"


def _run_child(out: Path) -> str:
    """Run the child in its namespace; its stdout and stderr."""
    with subprocess.Popen(
        [*_isolation(), sys.executable, "-m", "tests.integration.test_schemathesis", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as child:
        try:
            output, _ = child.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # SIGTERM lets the child stop the stack it started (see `child`).
            child.terminate()
            output, _ = child.communicate(timeout=60)
            pytest.fail(f"the schemathesis run took over {CHILD_TIMEOUT_S} s:\n{output[-4000:]}")
    return output


def _check_run(name: str, run: dict[str, Any]) -> None:
    cases = run.get("test_cases", {})
    where = f"{name} run:\n{run.get('output', '')}"
    assert run.get("failures") == [] and cases.get("with_failures") == 0, where
    assert run.get("errors") == [] and cases.get("errored") == 0, where
    assert run["exit_code"] == 0, where
    assert run["operations"]["errored"] == run["operations"]["skipped"] == 0, where
    assert cases["generated"] >= run["operations"]["tested"], where


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    why_not = _isolation_works()
    if why_not is not None:
        # CI runs as root, where this always works; elsewhere say why it did not run.
        if os.environ.get("CI"):
            pytest.fail(f"cannot isolate the schemathesis run from the network: {why_not}")
        pytest.skip(f"no network namespace for the schemathesis run: {why_not}")
    started = time.monotonic()
    output = _run_child(tmp_path)
    summary_path = tmp_path / "summary.json"
    assert summary_path.exists(), f"the child wrote no summary:\n{output[-4000:]}"
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    operations: list[str] = summary["operations"]
    runs: dict[str, Any] = summary["runs"]
    requests: dict[str, dict[str, int]] = summary["requests"]

    print(f"schemathesis over {len(operations)} operations in {time.monotonic() - started:.0f} s")
    for name, run in runs.items():
        if run is None:
            continue
        print(
            f"  {name}: {run.get('test_cases', {}).get('generated')} cases, "
            f"{run.get('operations', {}).get('tested')} operations tested"
        )
    for operation in operations:
        print(f"  {operation}: {requests.get(operation, {})}")

    _check_run("key", runs["key"])
    # Every operation of the schema was exercised with the key...
    assert runs["key"]["operations"]["tested"] == len(operations)
    # ...and those that want a session token again with one.
    if summary["session_only"]:
        _check_run("session", runs["session"])
        assert runs["session"]["operations"]["tested"] == len(summary["session_only"])
        assert all(operation in operations for operation in summary["session_only"])
    # The gateway's own count agrees: each operation was called, and no answer
    # at all (methods the schema does not list included) was a 5xx.
    assert [op for op in operations if not requests.get(op)] == []
    assert summary["payments"] == {op: [503, "payments_disabled"] for op in PAYMENTS}
    server_errors = {
        op: {status: count for status, count in by_status.items() if status.startswith("5")}
        for op, by_status in requests.items()
    }
    assert {
        op: statuses
        for op, statuses in server_errors.items()
        if statuses and not (op in PAYMENTS and set(statuses) == {"503"})
    } == {}


# --- the child, inside the namespace -------------------------------------------

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# Ending the session would turn the rest of the session run into 401s; the
# key run covers this operation.
NOT_WITH_SESSION = ("POST /api/v1/auth/logout",)
# No payment provider is set up in this stack, and for that the contract's
# answer is `503 payments_disabled` (API.md "Accounts, keys and credits"):
# schemathesis accepts a 503 from these two, and the child checks that theirs
# is exactly that answer.
PAYMENTS = ("POST /api/v1/billing/checkout", "POST /api/v1/billing/stripe-webhook")


def _loopback_up() -> None:
    """A new network namespace starts with `lo` down; bring it up (no `ip` needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(
            "16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0))
        )[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


def _operations(schema: dict[str, Any]) -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in METHODS
    ]


@dataclass
class Credentials:
    key: str
    session: str


def _credentials(client: httpx.Client, env: dict[str, str]) -> Credentials:
    """An account made through the API, with API credits granted by `lipsyncctl`."""
    from tests.integration.harness import ctl

    login = {"email": f"fuzz-{uuid.uuid4().hex[:12]}@example.com", "password": "fuzz-password-1"}
    signup = client.post("/api/v1/auth/signup", json=login)
    signup.raise_for_status()
    session = client.post("/api/v1/auth/login", json=login).raise_for_status().json()["token"]
    auth = {"authorization": f"Bearer {session}"}
    key = client.post("/api/v1/keys", json={"name": "fuzz"}, headers=auth).raise_for_status()
    account = signup.json()["account_id"]
    ctl(env, "credits", "grant", "--account", account, "--amount", str(CREDITS), "--reason", "t")
    return Credentials(key=key.json()["key"], session=session)


def _schemathesis(
    base_url: str, token: str, out: Path, name: str, only: list[str] | None = None
) -> dict[str, Any]:
    """One `schemathesis run`; its JSON report with the exit code and the output's tail."""
    report = out / f"{name}.json"
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{base_url}/openapi.json",
        "--url",
        base_url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        # `Prefer: wait` may hold an answer up to 60 s by contract.
        "--request-timeout",
        "70",
        "--no-shrink",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    for operation in only or ():
        command += ["--include-name", operation]
    # Its caches go under `out`, not into the repository.
    run = subprocess.run(
        command, cwd=out, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    result: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {}
    result["exit_code"] = run.returncode
    result["output"] = (run.stdout + run.stderr)[-6000:]
    return result


def _write_config(out: Path) -> None:
    """`schemathesis.toml` in the run's folder: a 503 is expected of the payment routes."""
    entries = [
        f'[[operations]]\ninclude-name = "{operation}"\n'
        'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
        for operation in PAYMENTS
    ]
    (out / "schemathesis.toml").write_text("\n".join(entries))


def _payments_answers(client: httpx.Client, session: str) -> dict[str, list[Any]]:
    """What the payment routes answer well-formed requests: status and problem code."""
    checkout = client.post(
        "/api/v1/billing/checkout",
        json={"pack": 0},
        headers={"authorization": f"Bearer {session}"},
    )
    webhook = client.post(
        "/api/v1/billing/stripe-webhook",
        content=b'{"type": "checkout.session.completed"}',
        headers={"stripe-signature": "t=1,v1=00", "content-type": "application/json"},
    )
    return {
        operation: [response.status_code, response.json().get("code")]
        for operation, response in zip(PAYMENTS, (checkout, webhook), strict=True)
    }


def _requests_by_operation(
    metrics: str, before: dict[str, dict[str, int]] | None = None
) -> dict[str, dict[str, int]]:
    """The gateway's own count of answers per operation and status class, less `before`."""
    counts: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(metrics):
        if family.name != "lipsync_http_requests":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            operation = f"{sample.labels['method']} {sample.labels['route']}"
            # 5xx by exact status: a 503 of the payment routes is the contract's.
            code = sample.labels["status"]
            status = code if code.startswith("5") else f"{code[0]}xx"
            by_status = counts.setdefault(operation, {})
            by_status[status] = by_status.get(status, 0) + int(sample.value)
    for operation, by_status in (before or {}).items():
        for status, count in by_status.items():
            counts[operation][status] -= count
    return {
        operation: {status: count for status, count in by_status.items() if count}
        for operation, by_status in counts.items()
    }


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds `running_stack`, which stops every process of the stack.
    raise SystemExit(f"stopped by signal {signum}")


def child(out: Path) -> int:
    from tests.integration.harness import running_stack, stack_env

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    _loopback_up()
    data_dir = out / "stack"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = stack_env(data_dir)
    # As production: https only, no private addresses (see the module's docstring).
    env["LIPSYNC_ALLOW_PRIVATE_URLS"] = "false"
    # One key sends every case; the per-key limit would answer most of them 429.
    env["LIPSYNC_RATE_LIMIT_PER_MIN"] = "0"
    # The gateway's /metrics is on a port of its own, apart from the API.
    metrics_url = f"http://{env['LIPSYNC_GATEWAY_METRICS_ADDR']}/metrics"
    with running_stack(data_dir, env) as stack, httpx.Client(base_url=stack.http_url) as client:
        schema = client.get("/openapi.json").raise_for_status().json()
        credentials = _credentials(client, env)
        payments = _payments_answers(client, credentials.session)
        _write_config(out)
        # What came before the runs (the stack's readiness polls got 503s while
        # it started) is not theirs.
        before = _requests_by_operation(httpx.get(metrics_url).raise_for_status().text)
        with_key = _schemathesis(stack.http_url, credentials.key, out, "key")
        # What answered only 401/403 to a key takes a session token: run those again with one.
        session_only = [
            operation
            for operation in with_key.get("warnings", {}).get("missing_auth", [])
            if operation not in NOT_WITH_SESSION
        ]
        with_session = (
            _schemathesis(stack.http_url, credentials.session, out, "session", session_only)
            if session_only
            else None
        )
        metrics = httpx.get(metrics_url).raise_for_status().text
    summary = {
        "operations": _operations(schema),
        "session_only": session_only,
        "payments": payments,
        "runs": {"key": with_key, "session": with_session},
        "requests": _requests_by_operation(metrics, before),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(child(Path(sys.argv[1])))
