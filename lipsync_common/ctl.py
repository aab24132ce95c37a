"""`lipsyncctl`: the operator's command line for accounts, keys, credits and jobs.

Every command prints one JSON object on stdout. A failure prints
`{"error": ..., "code": ...}` on stderr and exits with status 1; `code` is the
gRPC status in lower case (`not_found`, `failed_precondition`, ...) or `usage`.
The services are reached at `LIPSYNC_AUTH_ADDR`, `LIPSYNC_BILLING_ADDR` and
`LIPSYNC_JOBS_ADDR`.

The job commands act as an operator, on any account's job (`any_account`):
only `jobs list` names an account, since a listing without one would mix
every customer's jobs. Jobs print as the public job object of API.md plus
`account_id`, and webhook attempts as `GET .../webhook-deliveries` shows
them, so what an operator reads is what the customer reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lipsync.auth.v1 import auth_pb2, auth_pb2_grpc
from lipsync.billing.v1 import billing_pb2, billing_pb2_grpc
from lipsync.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from lipsync_common.config import service_addr
from lipsync_common.job_spec import MODEL_NAMES, STATUSES_BY_NAME
from lipsync_common.jobjson import deliveries_to_json, job_to_json

RPC_TIMEOUT_S = 10.0
_WALLETS = {"api": billing_pb2.WALLET_API, "user": billing_pb2.WALLET_USER}


class UsageError(Exception):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits 2; the contract of this tool is JSON and 1.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _time(stamp: Timestamp, present: bool = True) -> str | None:
    if not present:
        return None
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _balance(balance: billing_pb2.GetBalanceResponse) -> dict[str, Any]:
    return {
        "api_credits": balance.api_credits,
        "user_credits": balance.user_credits,
        "reserved_credits": balance.reserved_credits,
    }


def _auth(channel: grpc.Channel) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(channel)


def _billing(channel: grpc.Channel) -> billing_pb2_grpc.BillingServiceStub:
    return billing_pb2_grpc.BillingServiceStub(channel)


def account_create(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).CreateAccount(
        auth_pb2.CreateAccountRequest(email=args.email), timeout=RPC_TIMEOUT_S
    )
    return {"account_id": response.account_id}


def _account(account: auth_pb2.Account) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "email": account.email,
        "created_at": _time(account.created_at),
        "disabled": account.disabled,
    }


def account_list(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).ListAccounts(
        auth_pb2.ListAccountsRequest(limit=args.limit, page_token=args.page_token),
        timeout=RPC_TIMEOUT_S,
    )
    return {
        "data": [_account(account) for account in response.accounts],
        "next_page_token": response.next_page_token or None,
    }


def account_disable(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).DisableAccount(
        auth_pb2.DisableAccountRequest(account_id=args.account), timeout=RPC_TIMEOUT_S
    )
    return _account(response.account)


def key_create(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).CreateApiKey(
        auth_pb2.CreateApiKeyRequest(account_id=args.account, name=args.name),
        timeout=RPC_TIMEOUT_S,
    )
    return {
        "key": response.key,
        "key_id": response.api_key.key_id,
        "name": response.api_key.name,
        "created_at": _time(response.api_key.created_at),
    }


def key_list(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).ListApiKeys(
        auth_pb2.ListApiKeysRequest(account_id=args.account), timeout=RPC_TIMEOUT_S
    )
    return {
        "data": [
            {
                "key_id": key.key_id,
                "name": key.name,
                "prefix": key.prefix,
                "created_at": _time(key.created_at),
                "last_used_at": _time(key.last_used_at, key.HasField("last_used_at")),
                "revoked": key.revoked,
            }
            for key in response.keys
        ]
    }


def key_revoke(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _auth(channel).RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(key_id=args.key_id), timeout=RPC_TIMEOUT_S
    )
    return {"key_id": response.api_key.key_id, "revoked": response.api_key.revoked}


def credits_grant(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _billing(channel).GrantCredits(
        billing_pb2.GrantCreditsRequest(
            account_id=args.account,
            amount=args.amount,
            reason=args.reason,
            wallet=_WALLETS[args.wallet],
        ),
        timeout=RPC_TIMEOUT_S,
    )
    return _balance(response.balance)


def credits_balance(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _billing(channel).GetBalance(
        billing_pb2.GetBalanceRequest(account_id=args.account), timeout=RPC_TIMEOUT_S
    )
    return _balance(response)


def credits_history(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _billing(channel).ListUsage(
        billing_pb2.ListUsageRequest(
            account_id=args.account, limit=args.limit, cursor=args.cursor, include_zero=True
        ),
        timeout=RPC_TIMEOUT_S,
    )
    return {
        "data": [
            {
                "id": entry.id,
                "kind": entry.kind,
                "wallet": entry.wallet,
                "job_id": entry.job_id or None,
                "model": entry.model or None,
                "billed_seconds": entry.billed_seconds or None,
                "resolution": entry.resolution or None,
                "credits": entry.credits,
                "reason": entry.reason,
                "created_at": _time(entry.created_at),
            }
            for entry in response.entries
        ],
        "next_cursor": response.next_cursor or None,
    }


def _jobs(channel: grpc.Channel) -> jobs_pb2_grpc.JobServiceStub:
    return jobs_pb2_grpc.JobServiceStub(channel)


def _job(job: jobs_pb2.Job) -> dict[str, Any]:
    return {**job_to_json(job), "account_id": job.account_id}


def _ref(job_id: str) -> jobs_pb2.JobRef:
    return jobs_pb2.JobRef(job_id=job_id, any_account=True)


def jobs_list(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _jobs(channel).ListJobs(
        jobs_pb2.ListJobsRequest(
            account_id=args.account,
            status=jobs_pb2.JobStatus.ValueType(STATUSES_BY_NAME.get(args.status or "", 0)),
            model=args.model or "",
            limit=args.limit,
            cursor=args.cursor,
        ),
        timeout=RPC_TIMEOUT_S,
    )
    return {
        "data": [_job(job) for job in response.jobs],
        "next_cursor": response.next_cursor or None,
    }


def jobs_get(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _jobs(channel).GetJob(
        jobs_pb2.GetJobRequest(job_id=args.job, any_account=True), timeout=RPC_TIMEOUT_S
    )
    return _job(response.job)


def jobs_cancel(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _jobs(channel).CancelJob(
        jobs_pb2.CancelJobRequest(job=_ref(args.job)), timeout=RPC_TIMEOUT_S
    )
    return _job(response.job)


def webhooks_deliveries(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    response = _jobs(channel).ListWebhookDeliveries(
        jobs_pb2.ListWebhookDeliveriesRequest(job=_ref(args.job)), timeout=RPC_TIMEOUT_S
    )
    return deliveries_to_json(response)


def webhooks_redeliver(args: argparse.Namespace, channel: grpc.Channel) -> dict[str, Any]:
    _jobs(channel).RedeliverWebhook(
        jobs_pb2.RedeliverWebhookRequest(job=_ref(args.job)), timeout=RPC_TIMEOUT_S
    )
    return {"job_id": args.job, "redelivering": True}


Command = Callable[[argparse.Namespace, grpc.Channel], dict[str, Any]]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lipsyncctl", description=__doc__.splitlines()[0] if __doc__ else "")
    groups = parser.add_subparsers(dest="group", required=True, parser_class=_Parser)

    def command(group: Any, name: str, service: str, run: Command, summary: str) -> Any:
        sub = group.add_parser(name, help=summary)
        sub.set_defaults(service=service, run=run)
        return sub

    account = groups.add_parser("account", help="accounts").add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    sub = command(account, "create", "auth", account_create, "open an account")
    sub.add_argument("--email", required=True)
    sub = command(account, "list", "auth", account_list, "list accounts, oldest first")
    sub.add_argument("--limit", type=int, default=100, help="accounts per page (max 1000)")
    sub.add_argument("--page-token", default="", help="next_page_token of the last page")
    sub = command(
        account, "disable", "auth", account_disable, "stop every key and session of an account"
    )
    sub.add_argument("--account", required=True, help="account id")

    key = groups.add_parser("key", help="API keys").add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    sub = command(key, "create", "auth", key_create, "issue a key; its secret is shown once")
    sub.add_argument("--account", required=True, help="account id")
    sub.add_argument("--name", default="", help="a memorable name")
    sub = command(key, "list", "auth", key_list, "list an account's keys")
    sub.add_argument("--account", required=True, help="account id")
    sub = command(key, "revoke", "auth", key_revoke, "revoke a key at once")
    sub.add_argument("--key-id", required=True)

    credit = groups.add_parser("credits", help="credit wallets").add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    sub = command(credit, "grant", "billing", credits_grant, "add credits to a wallet")
    sub.add_argument("--account", required=True, help="account id")
    sub.add_argument("--amount", required=True, type=int)
    sub.add_argument("--reason", required=True)
    sub.add_argument("--wallet", choices=sorted(_WALLETS), default="api")
    sub = command(credit, "balance", "billing", credits_balance, "show an account's wallets")
    sub.add_argument("--account", required=True, help="account id")
    sub = command(
        credit, "history", "billing", credits_history, "an account's ledger, newest first"
    )
    sub.add_argument("--account", required=True, help="account id")
    sub.add_argument("--limit", type=int, default=50, help="entries per page (max 200)")
    sub.add_argument("--cursor", default="", help="next_cursor of the last page")

    job = groups.add_parser("jobs", help="jobs of any account").add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    sub = command(job, "list", "jobs", jobs_list, "an account's jobs, newest first")
    sub.add_argument("--account", required=True, help="account id")
    sub.add_argument("--status", choices=sorted(STATUSES_BY_NAME), help="only jobs in this state")
    sub.add_argument("--model", choices=MODEL_NAMES, help="only jobs of this model")
    sub.add_argument("--limit", type=int, default=20, help="jobs per page (1 to 100)")
    sub.add_argument("--cursor", default="", help="next_cursor of the last page")
    sub = command(job, "get", "jobs", jobs_get, "show a job")
    sub.add_argument("job", help="job id")
    sub = command(job, "cancel", "jobs", jobs_cancel, "cancel a job in processing; nothing charged")
    sub.add_argument("job", help="job id")

    webhook = groups.add_parser("webhooks", help="webhook deliveries").add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    sub = command(
        webhook, "deliveries", "jobs", webhooks_deliveries, "a job's attempts, oldest first"
    )
    sub.add_argument("job", help="job id")
    sub = command(
        webhook, "redeliver", "jobs", webhooks_redeliver, "send an ended job's webhook again now"
    )
    sub.add_argument("job", help="job id")
    return parser


def _fail(error: str, code: str) -> int:
    print(json.dumps({"error": error, "code": code}), file=sys.stderr)
    return 1


def _message(args: argparse.Namespace, exc: grpc.RpcError) -> str:
    """A readable message for a failed call."""
    # job_service's NOT_FOUND details say nothing more than this (a job of
    # another account reads the same as a missing one to customers), and a
    # FAILED_PRECONDITION's details are the contract's word (`job_finished`).
    if args.service == "jobs" and exc.code() == grpc.StatusCode.NOT_FOUND:
        return "job not found"
    return exc.details() or str(exc)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _fail(str(exc), "usage")
    try:
        with grpc.insecure_channel(service_addr(args.service)) as channel:
            result = args.run(args, channel)
    except grpc.RpcError as exc:
        return _fail(_message(args, exc), exc.code().name.lower())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
