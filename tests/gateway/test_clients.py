"""Channels to the three services and how their failures read to clients."""

from __future__ import annotations

import dataclasses

import grpc

from gateway.clients import SERVICE_NAMES, Backends, connect, rpc_problem
from gateway.settings import GatewaySettings
from lipsync.auth.v1 import auth_pb2
from tests.gateway.conftest import API_KEY, FakeStack


def test_service_names_are_the_full_proto_names() -> None:
    assert SERVICE_NAMES == {
        "auth": "lipsync.auth.v1.AuthService",
        "billing": "lipsync.billing.v1.BillingService",
        "jobs": "lipsync.jobs.v1.JobService",
    }


async def test_connect_dials_the_configured_addresses(
    stack: FakeStack, settings: GatewaySettings
) -> None:
    auth_addr = f"127.0.0.1:{stack.ports['auth']}"
    backends = connect(dataclasses.replace(settings, auth_addr=auth_addr))
    try:
        response = await backends.auth.Authenticate(
            auth_pb2.AuthenticateRequest(credential=API_KEY), timeout=5
        )
        assert response.account_id == "acct-1"
        assert set(backends.channels) == {"auth", "billing", "jobs"}
    finally:
        await backends.close()
    assert backends.channels["auth"].get_state() == grpc.ChannelConnectivity.SHUTDOWN


async def test_from_channels_builds_stubs_on_the_given_channels(stack: FakeStack) -> None:
    channels = stack.backends.channels
    backends = Backends.from_channels(channels["auth"], channels["billing"], channels["jobs"])
    response = await backends.auth.Authenticate(
        auth_pb2.AuthenticateRequest(credential=API_KEY), timeout=5
    )
    assert response.key_id == "testkey1"


async def _failed_call(code_of_server: grpc.StatusCode) -> grpc.aio.AioRpcError:
    async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(code_of_server, "secret internals")
        return b""

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Fail", {"Call": grpc.unary_unary_rpc_method_handler(fail)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                await channel.unary_unary("/test.Fail/Call")(b"", timeout=5)
            except grpc.aio.AioRpcError as error:
                return error
    finally:
        await server.stop(None)
    raise AssertionError("the call succeeded")


async def test_transient_failures_are_503() -> None:
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        problem = rpc_problem("billing", await _failed_call(code))
        assert (problem.status, problem.code) == (503, "service_unavailable")
        assert problem.headers == {"Retry-After": "1"}


async def test_other_failures_are_500_without_internals() -> None:
    problem = rpc_problem("jobs", await _failed_call(grpc.StatusCode.INTERNAL))
    assert (problem.status, problem.code) == (500, "internal_error")
    assert "secret" not in str(problem.body())
