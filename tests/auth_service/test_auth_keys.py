from __future__ import annotations

import re
from pathlib import Path

import pytest

from auth_service import keys
from lipsync_common import credentials


def with_checksum(body: str) -> str:
    return body + credentials.checksum(body)


def test_generated_key_has_the_documented_format() -> None:
    new = keys.generate_key()
    assert re.fullmatch(r"sk_[a-z0-9]{12}_[0-9A-Za-z]{40}", new.key)
    assert new.key == f"sk_{new.key_id}_{new.secret}"
    assert new.prefix == new.key[:12]
    assert new.prefix.startswith("sk_")


def test_generated_keys_differ() -> None:
    assert len({keys.generate_key().key for _ in range(100)}) == 100


def test_parse_round_trips_a_generated_key() -> None:
    new = keys.generate_key()
    parsed = keys.parse_key(new.key)
    assert parsed == keys.ParsedKey(key_id=new.key_id, secret=new.secret)


@pytest.mark.parametrize(
    "credential",
    [
        "",
        "sk_",
        "abc",
        "Bearer sk_abcdefgh_" + "a" * 32,
        "pk_abcdefgh_" + "a" * 32,
        "sk_abcdefg_" + "a" * 32,  # key id too short
        "sk_" + "a" * 17 + "_" + "a" * 32,  # key id too long
        "sk_ABCDEFGH_" + "a" * 32,  # upper case key id
        "sk_abcdefgh_" + "a" * 31,  # secret too short
        "sk_abcdefgh_" + "a" * 31 + "-",  # not base62
        "sk_abcdefgh_" + "a" * 32 + "\n",
        " sk_abcdefgh_" + "a" * 32,
        "sk_abcdefgh_" + "a" * 1000,
    ],
)
def test_parse_rejects_malformed_keys(credential: str) -> None:
    assert keys.parse_key(credential) is None


def test_parse_accepts_the_bounds_of_the_format() -> None:
    assert keys.parse_key(with_checksum("sk_abcdefgh_" + "Z" * 26)) is not None
    assert keys.parse_key(with_checksum("sk_" + "0" * 16 + "_" + "9" * 26)) is not None


def test_parse_refuses_a_key_whose_checksum_does_not_match() -> None:
    key = keys.generate_key().key
    typo = key[:20] + ("a" if key[20] != "a" else "b") + key[21:]
    assert keys.parse_key(typo) is None
    assert keys.parse_key(key[:-1] + ("0" if key[-1] != "0" else "1")) is None
    # The checksum covers the key id too: a secret moved to another id fails.
    secret = key.split("_")[2]
    assert keys.parse_key(f"sk_{'x' * 12}_{secret}") is None


def test_session_tokens_are_checksummed_and_distinct_from_keys() -> None:
    token = credentials.new_session_token()
    assert token.startswith("ses_")
    assert credentials.is_session_token(token)
    assert not credentials.is_session_token(token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert keys.parse_key(token) is None
    assert credentials.is_well_formed(token)
    assert not credentials.is_well_formed("ses_" + "a" * 43)


def test_hash_verifies_only_the_same_secret_and_pepper() -> None:
    stored = keys.hash_secret(b"pepper", "s3cret")
    assert stored != "s3cret"
    assert keys.verify_secret(b"pepper", "s3cret", stored)
    assert not keys.verify_secret(b"pepper", "s3creT", stored)
    assert not keys.verify_secret(b"other", "s3cret", stored)


def test_pepper_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIPSYNC_AUTH_KEY_PEPPER", "configured")
    assert keys.load_pepper() == b"configured"


def test_pepper_is_generated_once_into_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIPSYNC_AUTH_KEY_PEPPER", raising=False)
    monkeypatch.setenv("LIPSYNC_DATA_DIR", str(tmp_path))
    first = keys.load_pepper()
    assert len(first) >= 32
    assert keys.load_pepper() == first
    assert (tmp_path / "auth-pepper.key").stat().st_mode & 0o777 == 0o600
