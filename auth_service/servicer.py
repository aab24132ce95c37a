"""AuthService over gRPC: accounts, sessions, API keys, webhook secrets."""

from __future__ import annotations

import base64
import logging
import re
import time
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from auth_service import keys, webhook_secrets
from auth_service.passwords import Passwords, password_problem
from auth_service.sessions import Sessions, SignupError, SignupRefused
from auth_service.settings import AuthSettings
from auth_service.store import (
    Account,
    ApiKeyRecord,
    AuthStore,
    DuplicateEmail,
    DuplicateKeyId,
    SealedSecret,
    UnknownAccount,
)
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync_common import credentials

log = logging.getLogger(__name__)

# One answer for every bad credential, so a caller learns nothing about which
# keys exist, were revoked or belong to a disabled account.
INVALID_KEY_MESSAGE = "invalid API key"
# Likewise one answer for every failed login: unknown email, wrong password,
# disabled account.
INVALID_LOGIN_MESSAGE = "wrong email or password"
DEFAULT_ACCOUNTS_PAGE = 100
MAX_ACCOUNTS_PAGE = 1000
# last_used_at is for humans; recording it at most once a minute per key spares
# the database a write on every request.
LAST_USED_RESOLUTION_S = 60.0
MAX_EMAIL_LENGTH = 254
MAX_KEY_NAME_LENGTH = 100
# Deliberately loose: the only real check of an address is mailing it.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
# A collision among 36^12 key ids is next to impossible, but costs only a retry.
_KEY_ID_ATTEMPTS = 3


def normalize_email(email: str) -> str | None:
    """The lowercased address, or None if it does not look like one."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL_RE.fullmatch(email):
        return None
    return email


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp


def api_key_message(record: ApiKeyRecord) -> auth_pb2.ApiKey:
    message = auth_pb2.ApiKey(
        key_id=record.key_id,
        account_id=record.account_id,
        name=record.name,
        prefix=record.prefix,
        created_at=_timestamp(record.created_at),
        revoked=record.revoked,
    )
    if record.last_used_at is not None:
        message.last_used_at.CopyFrom(_timestamp(record.last_used_at))
    return message


def account_message(account: Account) -> auth_pb2.Account:
    return auth_pb2.Account(
        account_id=account.id,
        email=account.email,
        created_at=_timestamp(account.created_at),
        disabled=account.disabled,
    )


def _page_token(account: Account) -> str:
    return base64.urlsafe_b64encode(f"{account.created_at!r} {account.id}".encode()).decode()


def _parse_page_token(token: str) -> tuple[float, str] | None:
    """The (created_at, id) a page token names; raises ValueError if it is not one."""
    if not token:
        return None
    created_at, _, account_id = base64.urlsafe_b64decode(token).decode().partition(" ")
    return float(created_at), account_id


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    # context.abort raises; this line only tells the type checker so.
    raise AssertionError("unreachable")


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(
        self,
        store: AuthStore,
        pepper: bytes,
        settings: AuthSettings | None = None,
        passwords: Passwords | None = None,
    ) -> None:
        settings = settings or AuthSettings()
        self._store = store
        self._pepper = pepper
        self._sessions = Sessions(
            store,
            passwords or Passwords(),
            pepper,
            ttl_s=settings.session_ttl_s,
            open_signup=settings.open_signup,
        )

    async def Signup(
        self, request: auth_pb2.SignupRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SignupResponse:
        email = normalize_email(request.email)
        if email is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "email is not valid")
        problem = password_problem(request.password)
        if problem is not None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            account_id = await self._sessions.signup(email, request.password)
        except SignupError as exc:
            code = (
                grpc.StatusCode.PERMISSION_DENIED
                if exc.reason is SignupRefused.CLOSED
                else grpc.StatusCode.ALREADY_EXISTS
            )
            await _abort(context, code, exc.reason.value)
        return auth_pb2.SignupResponse(account_id=account_id)

    async def Login(
        self, request: auth_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LoginResponse:
        email = normalize_email(request.email) or ""
        session = await self._sessions.login(email, request.password[:4096])
        if session is None:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, INVALID_LOGIN_MESSAGE)
        return auth_pb2.LoginResponse(
            token=session.token,
            expires_at=_timestamp(session.expires_at),
            account_id=session.account_id,
        )

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.LogoutResponse:
        await self._sessions.logout(request.token)
        return auth_pb2.LogoutResponse()

    async def GetWebhookSecret(
        self, request: auth_pb2.GetWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.GetWebhookSecretResponse:
        secret = await self._webhook_secret(request.account_id, context, replace=False)
        return auth_pb2.GetWebhookSecretResponse(secret=secret)

    async def RotateWebhookSecret(
        self, request: auth_pb2.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RotateWebhookSecretResponse:
        secret = await self._webhook_secret(request.account_id, context, replace=True)
        log.info("webhook secret rotated", extra={"fields": {"account_id": request.account_id}})
        return auth_pb2.RotateWebhookSecretResponse(secret=secret)

    async def _webhook_secret(
        self, account_id: str, context: grpc.aio.ServicerContext, replace: bool
    ) -> str:
        if not replace:
            existing = await self._store.get_webhook_secret(account_id)
            if existing is not None:
                return self._unseal(existing)
        if await self._store.get_account(account_id) is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "account not found")
        nonce, sealed = webhook_secrets.seal(self._pepper, webhook_secrets.new_secret())
        # Two first reads at once: the first insert wins and both see it.
        stored = await self._store.put_webhook_secret(
            account_id, SealedSecret(nonce, sealed), replace=replace
        )
        return self._unseal(stored)

    def _unseal(self, stored: SealedSecret) -> str:
        secret = webhook_secrets.unseal(self._pepper, stored.nonce, stored.sealed)
        return webhook_secrets.encode(secret)

    async def ListAccounts(
        self, request: auth_pb2.ListAccountsRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListAccountsResponse:
        limit = min(request.limit or DEFAULT_ACCOUNTS_PAGE, MAX_ACCOUNTS_PAGE)
        if limit < 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit must be positive")
        try:
            after = _parse_page_token(request.page_token)
        except ValueError:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "page_token is not valid")
        accounts = await self._store.list_accounts(limit + 1, after)
        page, more = accounts[:limit], len(accounts) > limit
        return auth_pb2.ListAccountsResponse(
            accounts=[account_message(a) for a in page],
            next_page_token=_page_token(page[-1]) if more else "",
        )

    async def DisableAccount(
        self, request: auth_pb2.DisableAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.DisableAccountResponse:
        account = await self._store.disable_account(request.account_id)
        if account is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "account not found")
        log.info("account disabled", extra={"fields": {"account_id": account.id}})
        return auth_pb2.DisableAccountResponse(account=account_message(account))

    async def CreateAccount(
        self, request: auth_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateAccountResponse:
        email = normalize_email(request.email)
        if email is None:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "email is not valid")
        try:
            account = await self._store.create_account(email)
        except DuplicateEmail:
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, "email already registered")
        log.info("account created", extra={"fields": {"account_id": account.id}})
        return auth_pb2.CreateAccountResponse(account_id=account.id)

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.CreateApiKeyResponse:
        name = request.name.strip()
        if len(name) > MAX_KEY_NAME_LENGTH:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"name must be at most {MAX_KEY_NAME_LENGTH} characters",
            )
        account = await self._store.get_account(request.account_id)
        if account is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "account not found")
        if account.disabled:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, "account is disabled")
        for _ in range(_KEY_ID_ATTEMPTS):
            new = keys.generate_key()
            try:
                record = await self._store.create_key(
                    account_id=account.id,
                    key_id=new.key_id,
                    name=name,
                    prefix=new.prefix,
                    secret_hash=keys.hash_secret(self._pepper, new.secret),
                )
            except DuplicateKeyId:
                continue
            except UnknownAccount:
                await _abort(context, grpc.StatusCode.NOT_FOUND, "account not found")
            log.info(
                "api key created",
                extra={"fields": {"account_id": account.id, "key_id": record.key_id}},
            )
            return auth_pb2.CreateApiKeyResponse(key=new.key, api_key=api_key_message(record))
        await _abort(context, grpc.StatusCode.INTERNAL, "could not allocate a key id")

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ListApiKeysResponse:
        if await self._store.get_account(request.account_id) is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "account not found")
        records = await self._store.list_keys(request.account_id)
        return auth_pb2.ListApiKeysResponse(keys=[api_key_message(r) for r in records])

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeApiKeyResponse:
        record = await self._store.revoke_key(request.key_id, request.account_id)
        if record is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "API key not found")
        log.info(
            "api key revoked",
            extra={"fields": {"account_id": record.account_id, "key_id": record.key_id}},
        )
        return auth_pb2.RevokeApiKeyResponse(api_key=api_key_message(record))

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.AuthenticateResponse:
        if credentials.is_session_token(request.credential):
            session = await self._sessions.authenticate(request.credential)
            if session is None:
                await _abort(context, grpc.StatusCode.UNAUTHENTICATED, INVALID_KEY_MESSAGE)
            account_id, session_id = session
            return auth_pb2.AuthenticateResponse(
                account_id=account_id,
                kind=auth_pb2.CREDENTIAL_KIND_SESSION,
                session_id=session_id,
            )
        parsed = keys.parse_key(request.credential)
        if parsed is None:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, INVALID_KEY_MESSAGE)
        # Read on every call, never cached here: a revocation works at once.
        found = await self._store.find_key(parsed.key_id)
        if (
            found is None
            or not keys.verify_secret(self._pepper, parsed.secret, found.key.secret_hash)
            or found.key.revoked
            or found.account_disabled
        ):
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, INVALID_KEY_MESSAGE)
        key = found.key
        now = time.time()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION_S:
            await self._store.touch_key(key.key_id, now, LAST_USED_RESOLUTION_S)
        return auth_pb2.AuthenticateResponse(
            account_id=key.account_id, key_id=key.key_id, kind=auth_pb2.CREDENTIAL_KIND_API_KEY
        )
