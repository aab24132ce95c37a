"""Fixtures of the integration tests: one real stack per test session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lipsync_common.devstack import Stack
from tests.integration.harness import MediaHost, ctl, running_stack, stack_env
from tests.media_fixtures import (
    portrait_path,
    write_garbage,
    write_no_face_image,
    write_speech_wav,
    write_talking_video,
    write_two_face_image,
)

pytestmark = pytest.mark.integration


@dataclass
class Platform:
    stack: Stack
    env: dict[str, str]
    media: MediaHost
    client: httpx.Client

    def account(self, credits: int) -> tuple[str, str]:
        """A new account with `credits` API credits and a key; returns (account, key)."""
        email = f"user-{uuid.uuid4().hex[:12]}@example.com"
        account_id = ctl(self.env, "account", "create", "--email", email)["account_id"]
        key = ctl(self.env, "key", "create", "--account", account_id, "--name", "test")["key"]
        if credits:
            ctl(
                self.env,
                "credits",
                "grant",
                "--account",
                account_id,
                "--amount",
                str(credits),
                "--reason",
                "test",
            )
        return account_id, key

    def balance(self, account_id: str) -> int:
        return int(ctl(self.env, "credits", "balance", "--account", account_id)["api_credits"])

    def settled_balance(self, account_id: str, expected: int, timeout_s: float = 10) -> int:
        """The balance once billing has consumed the job's terminal event.

        Billing captures or releases from the events stream, independently of
        job_service, so a reservation can outlive the job's `failed` state by a
        few milliseconds.
        """
        deadline = time.monotonic() + timeout_s
        while (balance := self.balance(account_id)) != expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return balance


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    (root / "portrait.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(root / "speech-3s.wav", 3.2, silence_tail=0.6)
    write_speech_wav(root / "speech-6s.wav", 6.0, silence_head=0.5)
    write_garbage(root / "garbage.mp3")
    write_no_face_image(root / "no-face.png")
    write_talking_video(root / "talking.mp4", 2.0)
    write_two_face_image(root / "two-faces.jpg")
    return root


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> Iterator[Platform]:
    data_dir = tmp_path_factory.mktemp("stack")
    env = stack_env(data_dir)
    media = MediaHost(media_dir)
    try:
        with running_stack(data_dir, env) as stack:
            with httpx.Client(base_url=stack.http_url, timeout=30) as client:
                yield Platform(stack, stack.env, media, client)
    finally:
        media.close()
