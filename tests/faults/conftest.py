"""The fault suite's stack, media and receivers; and the rule that keeps it out of `make test`.

Tests marked `faults` run only when asked for by marker (`make test-faults`,
i.e. `pytest -m faults`): they take minutes and kill processes on purpose, so
a plain `pytest -q`, `make test`, `make test-unit` or `make test-integration`
leaves them out.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lipsync_common.devstack import Stack
from tests.faults.event_watch import EventWatch
from tests.faults.receivers import HangingReceiver, TrickleHost, WebhookReceiver
from tests.faults.stack_control import StackControl
from tests.integration.harness import MediaHost, running_stack, stack_env
from tests.media_fixtures import (
    portrait_path,
    write_speech_wav,
    write_talking_video,
    write_two_face_image,
)

# Where the stack's logs are copied once it stopped (bench-report/ is git-ignored).
LOGS_COPY = Path(__file__).resolve().parents[2] / "bench-report" / "faults-logs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.option.markexpr or ""):
        return  # `-m faults` (or any expression naming it) decides by itself
    kept = [item for item in items if item.get_closest_marker("faults") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if item.get_closest_marker("faults") is not None]
        )
        items[:] = kept


@pytest.fixture(scope="module")
def fault_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-media")
    (root / "portrait.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(root / "speech-1.5s.wav", 1.5)
    write_speech_wav(root / "speech-6s.wav", 6.0, silence_head=0.5)
    write_talking_video(root / "talking.mp4", 1.5)
    write_two_face_image(root / "two-faces.jpg")
    return root


@pytest.fixture(scope="module")
def media_host(fault_media: Path) -> Iterator[MediaHost]:
    host = MediaHost(fault_media)
    yield host
    host.close()


@pytest.fixture(scope="module")
def trickle_host(fault_media: Path) -> Iterator[TrickleHost]:
    host = TrickleHost(fault_media)
    yield host
    host.close()


@pytest.fixture(scope="module")
def receivers() -> Iterator[dict[str, WebhookReceiver | HangingReceiver]]:
    made: dict[str, WebhookReceiver | HangingReceiver] = {
        "steady": WebhookReceiver("steady"),
        "flaky": WebhookReceiver("flaky"),
        "hanging": HangingReceiver("hanging"),
    }
    yield made
    for receiver in made.values():
        if isinstance(receiver, WebhookReceiver):
            receiver.stop()
        else:
            receiver.close()


def fault_env(data_dir: Path) -> dict[str, str]:
    env = stack_env(data_dir)
    env.update(
        {
            # Several jobs per worker: a trickling download must not hold up renders.
            "LIPSYNC_WORKER_CONCURRENCY": "4",
            # A download that trickles is cut after this, failing its job.
            "LIPSYNC_DOWNLOAD_TIMEOUT_S": "8",
            # The suite polls every open job once a second and cancels while it polls.
            "LIPSYNC_RATE_LIMIT_PER_MIN": "100000",
            # Fast services stop fast on SIGTERM; a stuck drain would show as a slow restart.
            "LIPSYNC_SHUTDOWN_GRACE_S": "5",
        }
    )
    return env


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("fault-stack")
    try:
        with running_stack(data_dir, fault_env(data_dir)) as stack:
            yield stack
    finally:
        # pytest keeps only its last few temporary folders: keep the logs beside the report.
        shutil.rmtree(LOGS_COPY, ignore_errors=True)
        shutil.copytree(data_dir / "logs", LOGS_COPY, dirs_exist_ok=True)


@pytest.fixture
def control(fault_stack: Stack) -> Iterator[StackControl]:
    made = StackControl(fault_stack)
    yield made
    made.close()


@pytest.fixture
def watch(fault_stack: Stack) -> Iterator[EventWatch]:
    made = EventWatch(fault_stack.env["LIPSYNC_NATS_URL"])
    yield made
    made.close()


@pytest.fixture
def rng() -> random.Random:
    # A fixed seed: a failing run can be repeated with the same choices.
    return random.Random(9)
