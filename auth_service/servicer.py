"""AuthService over gRPC: accounts, API keys and authentication."""

from __future__ import annotations

import logging
import re
import time
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from auth_service import keys
from auth_service.store import (
    ApiKeyRecord,
    AuthStore,
    DuplicateEmail,
    DuplicateKeyId,
    UnknownAccount,
)
from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc

log = logging.getLogger(__name__)

# One answer for every bad credential, so a caller learns nothing about which
# keys exist, were revoked or belong to a disabled account.
INVALID_KEY_MESSAGE = "invalid API key"
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


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    # context.abort raises; this line only tells the type checker so.
    raise AssertionError("unreachable")


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, store: AuthStore, pepper: bytes) -> None:
        self._store = store
        self._pepper = pepper

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
                f"name is longer than {MAX_KEY_NAME_LENGTH} characters",
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
        record = await self._store.revoke_key(request.key_id)
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
        return auth_pb2.AuthenticateResponse(account_id=key.account_id, key_id=key.key_id)
