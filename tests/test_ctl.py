"""`lipsyncctl` against real auth and billing servers started by the test."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lipsync_common import ctl
from tests.auth_service.auth_harness import running_auth
from tests.billing_service.billing_harness import running_billing


@dataclass
class Cli:
    capsys: pytest.CaptureFixture[str]

    async def run(self, *argv: str) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
        """Exit status, stdout JSON and stderr JSON of one command."""
        # The servers share this event loop, so the blocking CLI runs on a thread.
        status = await asyncio.to_thread(ctl.main, list(argv))
        out, err = self.capsys.readouterr()
        return status, json.loads(out) if out else None, json.loads(err) if err else None

    async def ok(self, *argv: str) -> dict[str, Any]:
        status, out, err = await self.run(*argv)
        assert (status, err) == (0, None)
        assert out is not None
        return out

    async def fails(self, *argv: str) -> dict[str, Any]:
        status, out, err = await self.run(*argv)
        assert (status, out) == (1, None)
        assert err is not None
        return err


@pytest.fixture
async def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[Cli]:
    (tmp_path / "auth").mkdir()
    (tmp_path / "billing").mkdir()
    async with running_auth(tmp_path / "auth") as auth:
        async with running_billing(tmp_path / "billing") as billing:
            monkeypatch.setenv("LIPSYNC_AUTH_ADDR", auth.addr)
            monkeypatch.setenv("LIPSYNC_BILLING_ADDR", billing.addr)
            yield Cli(capsys)


async def test_account_key_and_credits_lifecycle(cli: Cli) -> None:
    account = (await cli.ok("account", "create", "--email", "ops@example.com"))["account_id"]

    created = await cli.ok("key", "create", "--account", account, "--name", "ci")
    assert created["key"].startswith(f"sk_{created['key_id']}_")
    assert created["name"] == "ci"

    listed = await cli.ok("key", "list", "--account", account)
    assert listed == {
        "data": [
            {
                "key_id": created["key_id"],
                "name": "ci",
                "prefix": created["key"][:12],
                "created_at": created["created_at"],
                "last_used_at": None,
                "revoked": False,
            }
        ]
    }
    assert created["created_at"].endswith("Z")

    revoked = await cli.ok("key", "revoke", "--key-id", created["key_id"])
    assert revoked == {"key_id": created["key_id"], "revoked": True}
    listed = await cli.ok("key", "list", "--account", account)
    assert listed["data"][0]["revoked"] is True

    granted = await cli.ok(
        "credits", "grant", "--account", account, "--amount", "100", "--reason", "t"
    )
    assert granted == {"api_credits": 100, "user_credits": 0, "reserved_credits": 0}
    await cli.ok(
        "credits",
        "grant",
        "--account",
        account,
        "--amount",
        "5",
        "--reason",
        "web",
        "--wallet",
        "user",
    )
    balance = await cli.ok("credits", "balance", "--account", account)
    assert balance == {"api_credits": 100, "user_credits": 5, "reserved_credits": 0}


async def test_service_errors_are_json_on_stderr(cli: Cli) -> None:
    await cli.ok("account", "create", "--email", "ops@example.com")
    error = await cli.fails("account", "create", "--email", "OPS@example.com")
    assert error["code"] == "already_exists"
    assert error["error"]

    error = await cli.fails("key", "create", "--account", "no-such-account")
    assert error["code"] == "not_found"

    error = await cli.fails("credits", "grant", "--account", "a", "--amount", "0", "--reason", "r")
    assert error["code"] == "invalid_argument"


async def test_usage_errors_are_json_on_stderr(cli: Cli) -> None:
    error = await cli.fails("key", "create")
    assert error["code"] == "usage"
    assert "--account" in error["error"]
    error = await cli.fails(
        "credits", "grant", "--account", "a", "--amount", "ten", "--reason", "r"
    )
    assert error["code"] == "usage"


async def test_unreachable_service_is_reported(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_BILLING_ADDR", "127.0.0.1:1")
    error = await cli.fails("credits", "balance", "--account", "a")
    assert error["code"] == "unavailable"


async def test_account_list_disable_and_credits_history(cli: Cli) -> None:
    first = (await cli.ok("account", "create", "--email", "a@example.com"))["account_id"]
    second = (await cli.ok("account", "create", "--email", "b@example.com"))["account_id"]
    page = await cli.ok("account", "list", "--limit", "1")
    assert [a["account_id"] for a in page["data"]] == [first]
    rest = await cli.ok("account", "list", "--page-token", page["next_page_token"])
    assert [a["account_id"] for a in rest["data"]] == [second]
    assert rest["next_page_token"] is None

    disabled = await cli.ok("account", "disable", "--account", first)
    assert disabled["disabled"] is True
    error = await cli.fails("account", "disable", "--account", "nope")
    assert error["code"] == "not_found"

    for wallet, amount in (("api", "100"), ("user", "7")):
        await cli.ok(
            "credits",
            "grant",
            "--account",
            second,
            "--amount",
            amount,
            "--reason",
            "promo",
            "--wallet",
            wallet,
        )
    history = await cli.ok("credits", "history", "--account", second)
    assert [(e["wallet"], e["kind"], e["credits"]) for e in history["data"]] == [
        ("user", "grant", 7),
        ("api", "grant", 100),
    ]
    assert history["data"][0]["reason"] == "promo" and history["next_cursor"] is None
