from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from lipsync_common.signing import load_signing_key, sign_path, verify

KEY = b"secret-key"


def parts(path: str) -> tuple[str, int, str]:
    url = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return url.path.removeprefix("/files/"), int(query["expires"]), query["sig"]


def test_a_signed_path_verifies_until_it_expires() -> None:
    key, expires, sig = parts(sign_path(KEY, "job.mp4", 1000))
    assert key == "job.mp4"
    assert verify(KEY, key, expires, sig, now=999)
    assert not verify(KEY, key, expires, sig, now=1001)


def test_any_change_breaks_the_signature() -> None:
    key, expires, sig = parts(sign_path(KEY, "job.mp4", 1000))
    assert not verify(KEY, "other.mp4", expires, sig, now=0)
    assert not verify(KEY, key, expires + 1, sig, now=0)
    assert not verify(b"other-key", key, expires, sig, now=0)


def test_the_local_key_is_generated_once_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIPSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LIPSYNC_URL_SIGNING_KEY", raising=False)
    first = load_signing_key()
    assert len(first) >= 32 and load_signing_key() == first
    monkeypatch.setenv("LIPSYNC_URL_SIGNING_KEY", "configured")
    assert load_signing_key() == b"configured"
