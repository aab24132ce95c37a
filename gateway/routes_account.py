"""Account endpoints: sign-up, login, logout, API keys and the webhook secret.

Everything but sign-up and login takes a session token from login; an API key
gets 403 `session_required` here, because a leaked key must not be able to
mint more keys or read the webhook secret.
"""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway import openapi, openapi_account
from gateway.auth import Authenticator, Principal, bearer_credential
from gateway.clients import RPC_TIMEOUT_S, Backends, rpc_problem
from gateway.openapi_account import Credentials, KeyCreate
from gateway.problems import FieldError, Problem, invalid_parameters
from gateway.validation import Model, parse_json_object, read_body, validate
from lipsync.auth.v1 import auth_pb2

_SESSION_ERRORS = {
    401: "missing, malformed, expired or revoked session token",
    403: "an API key was sent; this call needs a session token",
    429: "rate limit exceeded; Retry-After says when to come back",
    503: "a backend service is unavailable; retry shortly",
}


def _body(model: type[Model], body: dict[str, Any]) -> Model:
    # No URLs in these bodies, so the private-URL setting plays no part.
    return validate(model, body, allow_private_urls=False)


def _auth_refusal(error: grpc.aio.AioRpcError, body: type[BaseModel]) -> Problem:
    """422 for auth's INVALID_ARGUMENT, naming the field its message starts with.

    auth writes these messages for users, each opening with the request field
    it refuses ("password must be at least 10 characters").
    """
    detail = error.details() or "invalid request"
    first = detail.split(" ", 1)[0]
    fields = list(body.model_fields)
    return invalid_parameters([FieldError(first if first in fields else fields[0], detail)])


def _key_json(key: auth_pb2.ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.ToJsonString(),
        "last_used_at": key.last_used_at.ToJsonString() if key.HasField("last_used_at") else None,
        "revoked": key.revoked,
    }


class AccountRoutes:
    def __init__(self, backends: Backends, authenticator: Authenticator) -> None:
        self._auth = backends.auth
        self._authenticator = authenticator

    async def signup(self, request: Request) -> JSONResponse:
        credentials = _body(Credentials, parse_json_object(await read_body(request)))
        try:
            response = await self._auth.Signup(
                auth_pb2.SignupRequest(email=credentials.email, password=credentials.password),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.PERMISSION_DENIED:
                raise Problem(403, "signup_closed", "sign-up is closed on this server") from None
            if code == grpc.StatusCode.ALREADY_EXISTS:
                raise Problem(409, "email_taken", "an account with this email exists") from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise _auth_refusal(error, Credentials) from None
            raise rpc_problem("auth", error) from None
        return JSONResponse({"account_id": response.account_id}, status_code=201)

    async def login(self, request: Request) -> JSONResponse:
        credentials = _body(Credentials, parse_json_object(await read_body(request)))
        try:
            response = await self._auth.Login(
                auth_pb2.LoginRequest(email=credentials.email, password=credentials.password),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Problem(401, "invalid_login", "wrong email or password") from None
            raise rpc_problem("auth", error) from None
        return JSONResponse(
            {"token": response.token, "expires_at": response.expires_at.ToJsonString()},
            headers={"Cache-Control": "no-store"},
        )

    async def logout(self, request: Request) -> Response:
        token = bearer_credential(request.headers.get("authorization"))
        await self._call(
            self._auth.Logout(auth_pb2.LogoutRequest(token=token), timeout=RPC_TIMEOUT_S)
        )
        # Other replicas drop it when their cache entry expires, within a second.
        self._authenticator.forget_credential(token)
        return Response(status_code=204)

    async def create_key(self, request: Request, principal: Principal) -> JSONResponse:
        raw = await read_body(request)
        body = parse_json_object(raw) if raw.strip() else {}
        name = _body(KeyCreate, body).name
        try:
            response = await self._auth.CreateApiKey(
                auth_pb2.CreateApiKeyRequest(account_id=principal.account_id, name=name or ""),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise _auth_refusal(error, KeyCreate) from None
            raise rpc_problem("auth", error) from None
        key = response.api_key
        return JSONResponse(
            {
                "key_id": key.key_id,
                "key": response.key,
                "name": key.name,
                "created_at": key.created_at.ToJsonString(),
            },
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    async def list_keys(self, principal: Principal) -> JSONResponse:
        response = await self._call(
            self._auth.ListApiKeys(
                auth_pb2.ListApiKeysRequest(account_id=principal.account_id),
                timeout=RPC_TIMEOUT_S,
            )
        )
        return JSONResponse({"data": [_key_json(key) for key in response.keys]})

    async def revoke_key(self, key_id: str, principal: Principal) -> Response:
        try:
            await self._auth.RevokeApiKey(
                auth_pb2.RevokeApiKeyRequest(key_id=key_id, account_id=principal.account_id),
                timeout=RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise Problem(404, "not_found", "API key not found") from None
            raise rpc_problem("auth", error) from None
        self._authenticator.forget_key(key_id)
        return Response(status_code=204)

    async def webhook_secret(self, principal: Principal, rotate: bool) -> JSONResponse:
        if rotate:
            call = self._auth.RotateWebhookSecret(
                auth_pb2.RotateWebhookSecretRequest(account_id=principal.account_id),
                timeout=RPC_TIMEOUT_S,
            )
        else:
            call = self._auth.GetWebhookSecret(
                auth_pb2.GetWebhookSecretRequest(account_id=principal.account_id),
                timeout=RPC_TIMEOUT_S,
            )
        response = await self._call(call)
        return JSONResponse({"secret": response.secret}, headers={"Cache-Control": "no-store"})

    async def _call(self, call: Any) -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise rpc_problem("auth", error) from None


def router(backends: Backends, authenticator: Authenticator) -> APIRouter:
    handlers = AccountRoutes(backends, authenticator)
    public = APIRouter(prefix="/api/v1/auth", tags=["account"])
    api = APIRouter(prefix="/api/v1", tags=["account"])
    session = Security(authenticator.session_only)
    docs = openapi_account

    @public.post(
        "/signup",
        name="signup",
        summary="Open an account with an email and a password.",
        status_code=201,
        response_model=docs.SignupResponse,
        responses=openapi.problem_responses(
            {
                403: "sign-up is closed on this server (`signup_closed`)",
                409: "an account with this email exists (`email_taken`)",
                422: "email missing or invalid, or password shorter than 10 characters",
            }
        ),
        openapi_extra=docs.body(docs.Credentials),
    )
    async def signup(request: Request) -> JSONResponse:
        return await handlers.signup(request)

    @public.post(
        "/login",
        name="login",
        summary="Exchange an email and a password for a session token.",
        response_model=docs.LoginResponse,
        responses=openapi.problem_responses(
            {401: "wrong email or password (the same answer for an unknown email)"}
        ),
        openapi_extra=docs.body(docs.Credentials),
    )
    async def login(request: Request) -> JSONResponse:
        return await handlers.login(request)

    @public.post(
        "/logout",
        name="logout",
        summary="End the session of the bearer token.",
        status_code=204,
        responses=openapi.problem_responses(_SESSION_ERRORS),
    )
    async def logout(request: Request, principal: Principal = session) -> Response:
        return await handlers.logout(request)

    @api.post(
        "/keys",
        name="create-key",
        summary="Create an API key; its secret `key` is shown only in this answer.",
        status_code=201,
        response_model=docs.KeyCreated,
        responses=openapi.problem_responses({**_SESSION_ERRORS, 422: "name is not valid"}),
        openapi_extra=docs.body(docs.KeyCreate, required=False),
    )
    async def create_key(request: Request, principal: Principal = session) -> JSONResponse:
        return await handlers.create_key(request, principal)

    @api.get(
        "/keys",
        name="list-keys",
        summary="List the account's API keys, newest first, never with their secrets.",
        response_model=docs.KeyList,
        responses=openapi.problem_responses(_SESSION_ERRORS),
    )
    async def list_keys(principal: Principal = session) -> JSONResponse:
        return await handlers.list_keys(principal)

    @api.delete(
        "/keys/{key_id}",
        name="revoke-key",
        summary="Revoke an API key; every gateway refuses it within a second.",
        status_code=204,
        responses=openapi.problem_responses({**_SESSION_ERRORS, 404: "no such key"}),
    )
    async def revoke_key(key_id: str, principal: Principal = session) -> Response:
        return await handlers.revoke_key(key_id, principal)

    @api.get(
        "/webhook-secret",
        name="get-webhook-secret",
        summary="Read the secret that signs your webhooks (Standard Webhooks).",
        response_model=docs.WebhookSecret,
        responses=openapi.problem_responses(_SESSION_ERRORS),
    )
    async def get_webhook_secret(principal: Principal = session) -> JSONResponse:
        return await handlers.webhook_secret(principal, rotate=False)

    @api.post(
        "/webhook-secret/rotate",
        name="rotate-webhook-secret",
        summary="Replace the webhook signing secret; later deliveries use the new one.",
        response_model=docs.WebhookSecret,
        responses=openapi.problem_responses(_SESSION_ERRORS),
    )
    async def rotate_webhook_secret(principal: Principal = session) -> JSONResponse:
        return await handlers.webhook_secret(principal, rotate=True)

    combined = APIRouter()
    combined.include_router(public)
    combined.include_router(api)
    return combined
