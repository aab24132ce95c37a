"""Fixtures of the SDK and CLI tests: one real stack for the session, as a customer sees it.

The stack is the integration harness's (tests/integration/harness.py): every
service a separate process, a media host on loopback serving the inputs and
receiving webhooks. Accounts come from `lipsyncctl` (operator) or, when a
test needs the webhook secret, from self-serve signup and login over REST.
The `lipsync` command is run as a subprocess with only LIPSYNC_API_KEY and
LIPSYNC_BASE_URL, as a customer's shell would have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lipsync_common.devstack import Stack
from tests.integration.harness import MediaHost, bearer, ctl, running_stack, stack_env
from tests.media_fixtures import (
    portrait_path,
    write_no_face_image,
    write_speech_wav,
    write_talking_video,
    write_two_face_image,
)

PASSWORD = "correct horse battery"


@dataclass
class Account:
    account_id: str
    key: str
    # Only for accounts made by signup: the session token and the webhook secret.
    token: str = ""
    webhook_secret: str = ""


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class SdkStack:
    stack: Stack
    media: MediaHost
    media_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.stack.http_url

    def url(self, name: str) -> str:
        """The public URL of a file of the media host."""
        return f"{self.media.url}/{name}"

    def account(self, credits: int = 200) -> Account:
        email = f"sdk-{uuid.uuid4().hex[:12]}@example.com"
        account_id = ctl(self.env, "account", "create", "--email", email)["account_id"]
        key = ctl(self.env, "key", "create", "--account", account_id, "--name", "sdk")["key"]
        if credits:
            self.grant(account_id, credits)
        return Account(account_id, key)

    def signed_up_account(self, credits: int = 200) -> Account:
        """An account made as a customer makes one, with its session and webhook secret."""
        credentials = {"email": f"sdk-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD}
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            signup = client.post("/api/v1/auth/signup", json=credentials)
            assert signup.status_code == 201, signup.text
            token = client.post("/api/v1/auth/login", json=credentials).json()["token"]
            key = client.post("/api/v1/keys", json={"name": "sdk"}, headers=bearer(token))
            assert key.status_code == 201, key.text
            secret = client.get("/api/v1/webhook-secret", headers=bearer(token)).json()["secret"]
        account_id = signup.json()["account_id"]
        if credits:
            self.grant(account_id, credits)
        return Account(account_id, key.json()["key"], token, secret)

    def grant(self, account_id: str, credits: int) -> None:
        ctl(
            self.env,
            "credits",
            "grant",
            "--account",
            account_id,
            "--amount",
            str(credits),
            "--reason",
            "sdk test",
        )

    def cli_env(self, key: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
        env["LIPSYNC_BASE_URL"] = self.base_url
        if key is not None:
            env["LIPSYNC_API_KEY"] = key
        return env

    def cli(
        self, key: str | None, *args: str, timeout_s: float = 180, cwd: Path | None = None
    ) -> CliResult:
        """Run `lipsync ARGS` as a customer would, with the key in LIPSYNC_API_KEY."""
        result = subprocess.run(
            [lipsync_command(), *args],
            env=self.cli_env(key),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
        return CliResult(result.returncode, result.stdout, result.stderr)


def lipsync_command() -> str:
    """The `lipsync` console script that `make install` put into this virtualenv."""
    script = Path(sys.executable).with_name("lipsync")
    assert script.exists(), "the SDK is not installed: run `make install`"
    return str(script)


@pytest.fixture(scope="session")
def sdk_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdk-media")
    (root / "portrait.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(root / "speech-3s.wav", 3.2, silence_tail=0.6)
    # The names the READMEs' walk-through serves (tests/sdk/test_readme.py).
    (root / "face.jpg").write_bytes(portrait_path().read_bytes())
    write_speech_wav(root / "voice.wav", 4.0)
    write_two_face_image(root / "two-people.jpg")
    write_speech_wav(root / "speech-8s.wav", 8.0, silence_head=0.5)
    write_no_face_image(root / "no-face.png")
    write_talking_video(root / "talking.mp4", 2.0)
    write_two_face_image(root / "two-faces.jpg")
    return root


@pytest.fixture(scope="session")
def sdk_stack(tmp_path_factory: pytest.TempPathFactory, sdk_media: Path) -> Iterator[SdkStack]:
    data_dir = tmp_path_factory.mktemp("sdk-stack")
    env = stack_env(data_dir)
    media = MediaHost(sdk_media)
    try:
        with running_stack(data_dir, env) as stack:
            yield SdkStack(stack, media, sdk_media, stack.env)
    finally:
        media.close()
