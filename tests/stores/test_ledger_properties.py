"""Property-based tests of the ledger: any sequence of operations keeps the invariants.

Hypothesis draws sequences of grant, reserve, capture and release, with
duplicate deliveries (the previous operation again), crashes between steps (a
new `Ledger` on the same database, as after a restart) and torn transactions
(a write that dies before its commit). After every step the ledger must agree
with a plain in-memory model, its balance must equal the sum of its entries,
nothing may be negative, and each job must be reserved and settled at most once.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from billing_service import store
from billing_service.ledger import Ledger, ReserveOutcome, Settlement
from billing_service.store import Balance, Entry
from tests.stores.conftest import is_postgres
from tests.stores.ledger_checks import assert_invariants

JOBS = 5

# (name, arguments...): drawn by `operations`.
Op = tuple[Any, ...]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), st.sampled_from(["api", "user"]), st.integers(1, 100)),
        st.tuples(st.just("reserve"), st.integers(0, JOBS - 1), st.integers(1, 60)),
        st.tuples(st.sampled_from(["capture", "release"]), st.integers(0, JOBS - 1)),
        st.tuples(st.just("torn"), st.integers(0, JOBS - 1)),
        st.just(("repeat",)),
        st.just(("crash",)),
    ),
    max_size=30,
)


@dataclass
class Model:
    """What the ledger should hold: wallets and each job's (state, credits)."""

    api: int = 0
    user: int = 0
    reserved: int = 0
    jobs: dict[str, tuple[str, int]] = field(default_factory=dict)

    def balance(self) -> Balance:
        return Balance(self.api, self.user, self.reserved)

    def reserve(self, job: str, credits: int) -> tuple[ReserveOutcome, int]:
        state, held = self.jobs.get(job, ("", 0))
        if state in (store.CAPTURE, store.RELEASE):
            return ReserveOutcome.ALREADY_SETTLED, credits
        if state == store.RESERVE:
            return ReserveOutcome.RESERVED, held
        if self.api < credits:
            return ReserveOutcome.INSUFFICIENT_CREDITS, credits
        self.api -= credits
        self.reserved += credits
        self.jobs[job] = (store.RESERVE, credits)
        return ReserveOutcome.RESERVED, credits

    def settle(self, job: str, kind: str) -> tuple[Settlement, int]:
        state, held = self.jobs.get(job, ("", 0))
        if state == store.CAPTURE:
            return Settlement.ALREADY_CAPTURED, held
        if state == store.RELEASE:
            return Settlement.ALREADY_RELEASED, held
        self.jobs[job] = (kind, held)
        if state == "":
            return Settlement.NOT_RESERVED, 0
        self.reserved -= held
        if kind == store.RELEASE:
            self.api += held
            return Settlement.RELEASED, held
        return Settlement.CAPTURED, held


async def apply(ledger: Ledger, model: Model, account: str, op: Op) -> None:
    name = op[0]
    if name == "grant":
        _, wallet, amount = op
        await ledger.grant(account, amount, wallet, "property test")
        if wallet == "api":
            model.api += amount
        else:
            model.user += amount
    elif name == "reserve":
        _, index, credits = op
        job = f"{account}-job-{index}"
        result = await ledger.reserve(job, account, credits=credits, billed_seconds=credits)
        assert (result.outcome, result.credits) == model.reserve(job, credits)
    elif name in ("capture", "release"):
        job = f"{account}-job-{op[1]}"
        method = ledger.capture if name == "capture" else ledger.release
        settled = await method(job, account)
        assert (settled.settlement, settled.credits) == model.settle(job, name)
    elif name == "torn":
        await torn_reserve(ledger, account, f"{account}-job-{op[1]}")


async def torn_reserve(ledger: Ledger, account: str, job: str) -> None:
    """A reserve whose process dies after writing and before committing."""

    def write_then_die(conn: Connection) -> None:
        entry = Entry(account, store.WALLET_API, store.RESERVE, 1, job_id=job, billed_seconds=1)
        store.append(conn, entry)
        raise ConnectionAbortedError("the process died mid-transaction")

    try:
        await ledger._db.transaction(write_then_die)
    except ConnectionAbortedError:
        pass
    except IntegrityError:
        pass  # the job already had a reserve: the unique index refused the write


async def run_sequence(url: str, ops: list[Op]) -> None:
    account = f"acct-{uuid.uuid4().hex}"
    model = Model()
    ledger = Ledger(url)
    await ledger.open()
    try:
        previous: Op | None = None
        for op in ops:
            if op[0] == "crash":
                await ledger.close()
                ledger = Ledger(url)
                await ledger.open()
            elif op[0] == "repeat":
                if previous is not None:
                    await apply(ledger, model, account, previous)
            else:
                await apply(ledger, model, account, op)
                previous = op
            assert await assert_invariants(ledger, account) == model.balance()
    finally:
        await ledger.close()


def test_any_sequence_of_operations_keeps_the_ledger_invariants(database_url: str) -> None:
    # Each example uses its own account on the test's database, so examples
    # are independent without a database each.
    @settings(
        max_examples=20 if is_postgres(database_url) else 50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(ops=operations)
    def check(ops: list[Op]) -> None:
        asyncio.run(run_sequence(database_url, ops))

    check()
