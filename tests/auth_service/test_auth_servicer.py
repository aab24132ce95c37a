from __future__ import annotations

import time

import grpc
import pytest

from auth_service.servicer import INVALID_KEY_MESSAGE
from lipsync.auth.v1 import auth_pb2
from tests.auth_service.auth_harness import AuthHarness


async def create_account(auth: AuthHarness, email: str = "Ada@Example.com") -> str:
    response = await auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(email=email))
    return response.account_id


async def create_key(auth: AuthHarness, account_id: str, name: str = "") -> str:
    response = await auth.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(account_id=account_id, name=name)
    )
    return response.key


async def authenticate(auth: AuthHarness, credential: str) -> auth_pb2.AuthenticateResponse:
    return await auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=credential))


async def assert_unauthenticated(auth: AuthHarness, credential: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await authenticate(auth, credential)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == INVALID_KEY_MESSAGE


async def test_create_account_returns_an_id(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    assert len(account_id) == 32
    account = await auth.store.get_account(account_id)
    assert account is not None
    assert account.email == "ada@example.com"


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.com", "a b@example.com", "a@b"])
async def test_create_account_rejects_an_invalid_email(auth: AuthHarness, email: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_account(auth, email)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_duplicate_email_is_already_exists_whatever_its_case(auth: AuthHarness) -> None:
    await create_account(auth, "ada@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_account(auth, "ADA@example.COM")
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_created_key_authenticates_its_account(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    response = await auth.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(account_id=account_id, name="ci")
    )
    assert response.key.startswith(f"sk_{response.api_key.key_id}_")
    assert response.api_key.name == "ci"
    assert response.api_key.prefix == response.key[:12]
    assert not response.api_key.revoked

    who = await authenticate(auth, response.key)
    assert who.account_id == account_id
    assert who.key_id == response.api_key.key_id


async def test_key_secret_is_not_stored(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    key = await create_key(auth, account_id)
    secret = key.rsplit("_", 1)[1]
    await authenticate(auth, key)
    # WAL mode: recent writes may still sit in the -wal file, so read all of them.
    stored = b"".join(
        path.read_bytes() for path in auth.db_path.parent.glob(f"{auth.db_path.name}*")
    )
    assert key[:12].encode() in stored
    assert secret.encode() not in stored
    assert secret[:20].encode() not in stored


async def test_create_key_for_unknown_account_is_not_found(auth: AuthHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_key(auth, "nope")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_keys_newest_first_without_secrets(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    first = await create_key(auth, account_id, "first")
    second = await create_key(auth, account_id, "second")
    other_account = await create_account(auth, "other@example.com")
    await create_key(auth, other_account)

    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(account_id=account_id))
    assert [key.name for key in listed.keys] == ["second", "first"]
    assert [key.prefix for key in listed.keys] == [second[:12], first[:12]]
    serialized = listed.SerializeToString()
    for key in (first, second):
        assert key.rsplit("_", 1)[1].encode() not in serialized
    assert all(not key.HasField("last_used_at") for key in listed.keys)


async def test_list_keys_of_unknown_account_is_not_found(auth: AuthHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(account_id="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_authenticate_records_last_use_at_most_once_a_minute(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    key = await create_key(auth, account_id)
    before = time.time()
    await authenticate(auth, key)
    (first,) = await auth.store.list_keys(account_id)
    assert first.last_used_at is not None
    assert first.last_used_at >= before

    await authenticate(auth, key)
    (second,) = await auth.store.list_keys(account_id)
    assert second.last_used_at == first.last_used_at

    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(account_id=account_id))
    assert listed.keys[0].HasField("last_used_at")


async def test_revoked_key_is_refused_at_once(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    key = await create_key(auth, account_id)
    await authenticate(auth, key)
    key_id = key.split("_")[1]

    revoked = await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key_id))
    assert revoked.api_key.revoked
    await assert_unauthenticated(auth, key)

    again = await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key_id))
    assert again.api_key.revoked
    assert again.api_key.created_at == revoked.api_key.created_at


async def test_revoke_unknown_key_is_not_found(auth: AuthHarness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id="abcdefgh1234"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_and_wrong_secret_keys_are_refused_alike(auth: AuthHarness) -> None:
    account_id = await create_account(auth)
    key = await create_key(auth, account_id)
    key_id, secret = key.split("_")[1:]
    await assert_unauthenticated(auth, f"sk_zzzzzzzzzzzz_{secret}")
    await assert_unauthenticated(auth, f"sk_{key_id}_{'A' * 40}")


@pytest.mark.parametrize("credential", ["", "sk_", "Bearer x", "sk_abc_def", "x" * 5000])
async def test_malformed_credentials_are_refused_alike(auth: AuthHarness, credential: str) -> None:
    await assert_unauthenticated(auth, credential)
