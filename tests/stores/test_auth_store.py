"""auth_service's store on both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from auth_service.store import (
    AuthStore,
    DuplicateEmail,
    DuplicateKeyId,
    SealedSecret,
    UnknownAccount,
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[AuthStore]:
    opened = AuthStore(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_accounts_are_created_once_per_email(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    assert await store.get_account(account.id) == account
    assert await store.get_account("nobody") is None
    with pytest.raises(DuplicateEmail):
        await store.create_account("ada@example.com")


async def test_simultaneous_sign_ups_with_one_email_make_one_account(store: AuthStore) -> None:
    results = await asyncio.gather(
        *(store.create_account("race@example.com") for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, DuplicateEmail) for r in results if r not in created)


async def test_login_lookup_returns_the_password_hash(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com", password_hash="$argon2id$x")
    assert await store.find_login("ada@example.com") == (account, "$argon2id$x")
    assert await store.find_login("bob@example.com") is None


async def test_keys_belong_to_an_existing_account_and_ids_are_unique(store: AuthStore) -> None:
    with pytest.raises(UnknownAccount):
        await store.create_key("nobody", "k1", "", "sk_live_k1", "hash")
    account = await store.create_account("ada@example.com")
    await store.create_key(account.id, "k1", "ci", "sk_live_k1", "hash")
    with pytest.raises(DuplicateKeyId):
        await store.create_key(account.id, "k1", "again", "sk_live_k1", "hash")


async def test_keys_are_listed_newest_first(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    for key_id in ("k1", "k2", "k3"):
        await store.create_key(account.id, key_id, key_id.upper(), f"sk_{key_id}", "hash")
    keys = await store.list_keys(account.id)
    assert [k.key_id for k in keys] == ["k3", "k2", "k1"]
    assert [k.name for k in keys] == ["K3", "K2", "K1"]
    assert await store.list_keys("nobody") == []


async def test_revocation_keeps_the_first_time_and_the_row(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    await store.create_key(account.id, "k1", "", "sk_k1", "hash")
    first = await store.revoke_key("k1")
    assert first is not None and first.revoked
    again = await store.revoke_key("k1")
    assert again is not None and again.revoked_at == first.revoked_at
    assert await store.revoke_key("unknown") is None
    assert [k.revoked for k in await store.list_keys(account.id)] == [True]


async def test_a_key_of_another_account_cannot_be_revoked(store: AuthStore) -> None:
    owner = await store.create_account("ada@example.com")
    other = await store.create_account("bob@example.com")
    await store.create_key(owner.id, "k1", "", "sk_k1", "hash")
    assert await store.revoke_key("k1", account_id=other.id) is None
    found = await store.find_key("k1")
    assert found is not None and not found.key.revoked


async def test_find_key_reports_a_disabled_account(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    await store.create_key(account.id, "k1", "", "sk_k1", "hash")
    found = await store.find_key("k1")
    assert found is not None and not found.account_disabled
    disabled = await store.disable_account(account.id)
    assert disabled is not None and disabled.disabled
    found = await store.find_key("k1")
    assert found is not None and found.account_disabled
    assert await store.find_key("nope") is None


async def test_key_use_is_recorded_at_most_once_per_interval(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    await store.create_key(account.id, "k1", "", "sk_k1", "hash")
    now = time.time()
    await store.touch_key("k1", now, min_interval_s=60)
    await store.touch_key("k1", now + 30, min_interval_s=60)
    found = await store.find_key("k1")
    assert found is not None and found.key.last_used_at == now
    await store.touch_key("k1", now + 61, min_interval_s=60)
    found = await store.find_key("k1")
    assert found is not None and found.key.last_used_at == now + 61


async def test_sessions_are_found_until_revoked(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    await store.create_session("token-hash", account.id, expires_at=time.time() + 60)
    session = await store.find_session("token-hash")
    assert session is not None and session.account_id == account.id and not session.revoked
    await store.revoke_session("token-hash")
    session = await store.find_session("token-hash")
    assert session is not None and session.revoked


async def test_webhook_secret_upsert_keeps_or_replaces(store: AuthStore) -> None:
    account = await store.create_account("ada@example.com")
    first = SealedSecret("n1", "s1")
    assert await store.put_webhook_secret(account.id, first, replace=False) == first
    kept = await store.put_webhook_secret(account.id, SealedSecret("n2", "s2"), replace=False)
    assert kept == first
    rotated = await store.put_webhook_secret(account.id, SealedSecret("n3", "s3"), replace=True)
    assert rotated == SealedSecret("n3", "s3")
    assert await store.get_webhook_secret(account.id) == rotated


async def test_accounts_and_keys_survive_a_restart(database_url: str) -> None:
    first = AuthStore(database_url)
    await first.open()
    account = await first.create_account("ada@example.com")
    await first.create_key(account.id, "k1", "", "sk_k1", "hash")
    await first.close()
    second = AuthStore(database_url)
    await second.open()
    try:
        assert await second.get_account(account.id) == account
        assert [k.key_id for k in await second.list_keys(account.id)] == ["k1"]
    finally:
        await second.close()
