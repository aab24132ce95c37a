"""Settings come from the environment, with the documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from lipsync_common.config import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "LIPSYNC_HTTP_ADDR",
        "LIPSYNC_PUBLIC_URL",
        "LIPSYNC_RESULTS_DIR",
        "LIPSYNC_ALLOW_PRIVATE_URLS",
        "LIPSYNC_AUTH_CACHE_S",
        "LIPSYNC_AUTH_ADDR",
        "LIPSYNC_BILLING_ADDR",
        "LIPSYNC_JOBS_ADDR",
        "LIPSYNC_URL_SIGNING_KEY",
        "LIPSYNC_SHUTDOWN_GRACE_S",
        "LIPSYNC_NATS_URL",
        "LIPSYNC_EMBEDDED_NATS_PORT",
        "LIPSYNC_MAX_WAITERS",
        "LIPSYNC_MAX_WAITERS_PER_ACCOUNT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIPSYNC_DATA_DIR", str(tmp_path / "data"))


def test_defaults(tmp_path: Path) -> None:
    settings = GatewaySettings.from_env()
    assert settings.http_addr == "127.0.0.1:8080"
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.results_dir == (tmp_path / "data" / "results").resolve()
    assert settings.allow_private_urls is False
    assert settings.auth_cache_s == 0.5
    assert settings.auth_addr == "127.0.0.1:50151"
    assert settings.billing_addr == "127.0.0.1:50152"
    assert settings.jobs_addr == "127.0.0.1:50153"
    assert settings.shutdown_grace_s == 10.0
    # The NATS that `make run` starts; Prefer: wait is bounded per replica and account.
    assert settings.nats_url == "nats://127.0.0.1:14222"
    assert (settings.max_waiters, settings.max_waiters_per_account) == (10_000, 100)
    # Without a configured key, one is generated once in the data directory.
    assert settings.signing_key == (tmp_path / "data" / "url-signing.key").read_bytes().strip()


def test_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIPSYNC_HTTP_ADDR", "0.0.0.0:9000")
    monkeypatch.setenv("LIPSYNC_PUBLIC_URL", "https://api.example.com/")
    monkeypatch.setenv("LIPSYNC_RESULTS_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("LIPSYNC_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("LIPSYNC_AUTH_CACHE_S", "0.25")
    monkeypatch.setenv("LIPSYNC_JOBS_ADDR", "jobs:50051")
    monkeypatch.setenv("LIPSYNC_URL_SIGNING_KEY", "configured")
    monkeypatch.setenv("LIPSYNC_NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("LIPSYNC_MAX_WAITERS", "50")
    monkeypatch.setenv("LIPSYNC_MAX_WAITERS_PER_ACCOUNT", "-3")
    settings = GatewaySettings.from_env()
    assert settings.http_addr == "0.0.0.0:9000"
    assert settings.public_url == "https://api.example.com"
    assert settings.results_dir == (tmp_path / "elsewhere").resolve()
    assert settings.allow_private_urls is True
    assert settings.auth_cache_s == 0.25
    assert settings.jobs_addr == "jobs:50051"
    assert settings.signing_key == b"configured"
    assert settings.nats_url == "nats://nats:4222"
    # A negative bound means no waiting at all, not an unbounded one.
    assert (settings.max_waiters, settings.max_waiters_per_account) == (50, 0)


def test_signing_key_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_URL_SIGNING_KEY", "do-not-print")
    assert "do-not-print" not in repr(GatewaySettings.from_env())


def test_bad_boolean_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_ALLOW_PRIVATE_URLS", "maybe")
    with pytest.raises(ConfigError):
        GatewaySettings.from_env()


def test_negative_cache_ttl_means_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_AUTH_CACHE_S", "-1")
    assert GatewaySettings.from_env().auth_cache_s == 0.0
