"""The ledger's invariants, checked from the entries themselves."""

from __future__ import annotations

from collections import Counter

from billing_service.ledger import Ledger
from billing_service.store import Balance, Entry


def balance_from_entries(entries: list[Entry]) -> Balance:
    total: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        total[(entry.wallet, entry.kind)] += entry.amount
    reserves = total[("api", "reserve")]
    settled = total[("api", "capture")] + total[("api", "release")]
    return Balance(
        api_credits=total[("api", "grant")] - reserves + total[("api", "release")],
        user_credits=total[("user", "grant")],
        reserved_credits=reserves - settled,
    )


async def assert_invariants(ledger: Ledger, account_id: str) -> Balance:
    """Balance equals the sum of the entries, never negative, each job settled once."""
    entries = await ledger.entries(account_id)
    balance = await ledger.balance(account_id)
    assert balance == balance_from_entries(entries)
    assert balance.api_credits >= 0 and balance.user_credits >= 0
    assert balance.reserved_credits >= 0
    per_job: dict[str, list[str]] = {}
    for entry in entries:
        if entry.job_id is not None:
            per_job.setdefault(entry.job_id, []).append(entry.kind)
    for job_id, kinds in per_job.items():
        assert kinds.count("reserve") <= 1, job_id
        assert kinds.count("capture") + kinds.count("release") <= 1, job_id
        # A settlement follows its reserve; a late reserve never follows a settlement.
        if "reserve" in kinds:
            assert kinds[0] == "reserve", job_id
    return balance
