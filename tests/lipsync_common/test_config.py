from __future__ import annotations

import pytest

from lipsync_common.config import (
    ConfigError,
    ServerSettings,
    env_bool,
    env_int,
    nats_url,
    split_host_port,
)


def test_booleans_accept_the_usual_words(monkeypatch: pytest.MonkeyPatch) -> None:
    for word, value in [("true", True), ("1", True), ("off", False), ("", False)]:
        monkeypatch.setenv("X_FLAG", word)
        assert env_bool("X_FLAG", False) is value
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ConfigError, match="X_FLAG"):
        env_bool("X_FLAG", False)


def test_a_bad_integer_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_N", "ten")
    with pytest.raises(ConfigError, match="X_N"):
        env_int("X_N", 1)


def test_nats_defaults_to_the_embedded_port_not_4222(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIPSYNC_NATS_URL", raising=False)
    monkeypatch.delenv("LIPSYNC_EMBEDDED_NATS_PORT", raising=False)
    assert nats_url() == "nats://127.0.0.1:14222"
    monkeypatch.setenv("LIPSYNC_NATS_URL", "nats://nats:4222")
    assert nats_url() == "nats://nats:4222"


def test_a_service_listens_on_its_address_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIPSYNC_AUTH_ADDR", "auth:50051")
    monkeypatch.delenv("LIPSYNC_GRPC_LISTEN", raising=False)
    assert ServerSettings.from_env("auth").grpc_listen == "auth:50051"
    monkeypatch.setenv("LIPSYNC_GRPC_LISTEN", "0.0.0.0:50051")
    assert ServerSettings.from_env("auth").grpc_listen == "0.0.0.0:50051"


def test_addresses_split_into_host_and_port() -> None:
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:80") == ("::1", 80)
    with pytest.raises(ConfigError):
        split_host_port("nohost")
