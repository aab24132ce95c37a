"""Sign-up, login, sessions, account-scoped keys, webhook secrets and operators."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import grpc
import pytest

from auth_service.servicer import INVALID_KEY_MESSAGE, INVALID_LOGIN_MESSAGE
from auth_service.settings import AuthSettings
from lipsync.auth.v1 import auth_pb2
from tests.auth_service.auth_harness import AuthHarness, running_auth

PASSWORD = "correct horse battery"


async def signup(auth: AuthHarness, email: str = "ada@example.com") -> str:
    response = await auth.stub.Signup(auth_pb2.SignupRequest(email=email, password=PASSWORD))
    return response.account_id


async def login(auth: AuthHarness, email: str = "ada@example.com") -> auth_pb2.LoginResponse:
    return await auth.stub.Login(auth_pb2.LoginRequest(email=email, password=PASSWORD))


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def test_signup_then_login_gives_a_session_that_authenticates(auth: AuthHarness) -> None:
    account_id = await signup(auth, "Ada@Example.com")
    before = time.time()
    session = await login(auth, "ADA@example.com")
    assert session.account_id == account_id
    assert session.token.startswith("ses_")
    assert session.expires_at.seconds >= before + 29 * 24 * 3600

    who = await auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=session.token))
    assert who.account_id == account_id
    assert who.kind == auth_pb2.CREDENTIAL_KIND_SESSION
    assert who.session_id.startswith("ses_") and who.session_id not in session.token
    assert who.key_id == ""


async def test_password_and_token_are_never_stored_in_clear(auth: AuthHarness) -> None:
    await signup(auth)
    session = await login(auth)
    stored = b"".join(p.read_bytes() for p in auth.db_path.parent.glob(f"{auth.db_path.name}*"))
    assert PASSWORD.encode() not in stored
    assert session.token.encode() not in stored
    assert b"$argon2id$" in stored


async def test_short_password_is_invalid_argument(auth: AuthHarness) -> None:
    error = await rpc_error(
        auth.stub.Signup(auth_pb2.SignupRequest(email="a@example.com", password="123456789"))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "password" in (error.details() or "")


async def test_taken_email_is_already_exists(auth: AuthHarness) -> None:
    await signup(auth)
    error = await rpc_error(signup(auth, "ADA@example.com"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_closed_signup_is_permission_denied(tmp_path: Path) -> None:
    async with running_auth(tmp_path, AuthSettings(open_signup=False)) as closed:
        error = await rpc_error(signup(closed))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_wrong_password_and_unknown_email_fail_alike(auth: AuthHarness) -> None:
    await signup(auth)
    wrong = await rpc_error(
        auth.stub.Login(auth_pb2.LoginRequest(email="ada@example.com", password="x" * 12))
    )
    unknown = await rpc_error(login(auth, "bob@example.com"))
    for error in (wrong, unknown):
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == INVALID_LOGIN_MESSAGE


async def test_operator_account_without_password_cannot_log_in(auth: AuthHarness) -> None:
    await auth.stub.CreateAccount(auth_pb2.CreateAccountRequest(email="ada@example.com"))
    error = await rpc_error(login(auth))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_logout_revokes_the_token(auth: AuthHarness) -> None:
    await signup(auth)
    session = await login(auth)
    await auth.stub.Logout(auth_pb2.LogoutRequest(token=session.token))
    await auth.stub.Logout(auth_pb2.LogoutRequest(token=session.token))
    error = await rpc_error(
        auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=session.token))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == INVALID_KEY_MESSAGE


async def test_expired_session_is_refused(tmp_path: Path) -> None:
    async with running_auth(tmp_path, AuthSettings(session_ttl_s=-1)) as auth:
        await signup(auth)
        session = await login(auth)
        error = await rpc_error(
            auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=session.token))
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_api_key_authenticates_as_a_key(auth: AuthHarness) -> None:
    account_id = await signup(auth)
    created = await auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(account_id=account_id))
    who = await auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=created.key))
    assert who.kind == auth_pb2.CREDENTIAL_KIND_API_KEY
    assert who.key_id == created.api_key.key_id


async def test_revoking_a_key_of_another_account_is_not_found(auth: AuthHarness) -> None:
    mine = await signup(auth)
    theirs = await signup(auth, "eve@example.com")
    created = await auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(account_id=mine))
    key_id = created.api_key.key_id
    error = await rpc_error(
        auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(key_id=key_id, account_id=theirs))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    (key,) = await auth.store.list_keys(mine)
    assert not key.revoked
    revoked = await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=key_id, account_id=mine)
    )
    assert revoked.api_key.revoked


async def test_webhook_secret_is_created_once_then_rotated(auth: AuthHarness) -> None:
    account_id = await signup(auth)
    request = auth_pb2.GetWebhookSecretRequest(account_id=account_id)
    first = (await auth.stub.GetWebhookSecret(request)).secret
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) >= 24
    assert (await auth.stub.GetWebhookSecret(request)).secret == first

    rotated = await auth.stub.RotateWebhookSecret(
        auth_pb2.RotateWebhookSecretRequest(account_id=account_id)
    )
    assert rotated.secret != first
    assert (await auth.stub.GetWebhookSecret(request)).secret == rotated.secret
    stored = b"".join(p.read_bytes() for p in auth.db_path.parent.glob(f"{auth.db_path.name}*"))
    assert rotated.secret.removeprefix("whsec_").encode() not in stored


async def test_webhook_secret_of_unknown_account_is_not_found(auth: AuthHarness) -> None:
    error = await rpc_error(
        auth.stub.GetWebhookSecret(auth_pb2.GetWebhookSecretRequest(account_id="nope"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_list_accounts_pages_oldest_first(auth: AuthHarness) -> None:
    ids = [await signup(auth, f"user{i}@example.com") for i in range(3)]
    first = await auth.stub.ListAccounts(auth_pb2.ListAccountsRequest(limit=2))
    assert [a.account_id for a in first.accounts] == ids[:2]
    assert first.accounts[0].email == "user0@example.com"
    second = await auth.stub.ListAccounts(
        auth_pb2.ListAccountsRequest(limit=2, page_token=first.next_page_token)
    )
    assert [a.account_id for a in second.accounts] == ids[2:]
    assert second.next_page_token == ""


async def test_disabled_account_loses_its_sessions_and_keys(auth: AuthHarness) -> None:
    account_id = await signup(auth)
    session = await login(auth)
    created = await auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(account_id=account_id))
    disabled = await auth.stub.DisableAccount(auth_pb2.DisableAccountRequest(account_id=account_id))
    assert disabled.account.disabled
    for credential in (session.token, created.key):
        error = await rpc_error(
            auth.stub.Authenticate(auth_pb2.AuthenticateRequest(credential=credential))
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await rpc_error(login(auth))).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_disable_unknown_account_is_not_found(auth: AuthHarness) -> None:
    error = await rpc_error(
        auth.stub.DisableAccount(auth_pb2.DisableAccountRequest(account_id="nope"))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
