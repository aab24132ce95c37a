"""Waiters: woken by job id, gone once their request ends, bounded per replica and account."""

from __future__ import annotations

import asyncio

from gateway.job_waiters import JobWaiters, sleep_until_woken


async def test_wake_sets_every_waiter_of_that_job_only() -> None:
    waiters = JobWaiters()
    with (
        waiters.register("j1", "a") as first,
        waiters.register("j1", "b") as second,
        waiters.register("j2", "a") as other,
    ):
        assert first is not None and second is not None and other is not None
        assert waiters.waiting_on("j1") == 2 and waiters.count == 3
        waiters.wake("j1")
        assert first.is_set() and second.is_set() and not other.is_set()
    assert waiters.count == 0 and waiters.waiting_on("j1") == 0
    waiters.wake("j1")  # nobody left: nothing happens


async def test_a_woken_sleep_returns_at_once_and_an_unwoken_one_after_its_time() -> None:
    waiters = JobWaiters()
    loop = asyncio.get_running_loop()
    with waiters.register("j", "a") as event:
        assert event is not None
        loop.call_later(0.05, waiters.wake, "j")
        started = loop.time()
        assert await sleep_until_woken(event, 5) is True
        assert loop.time() - started < 1
    with waiters.register("j", "a") as event:
        assert event is not None
        started = loop.time()
        assert await sleep_until_woken(event, 0.2) is False
        assert loop.time() - started >= 0.19
        assert await sleep_until_woken(event, 0) is False


async def test_bounds_per_account_and_per_replica() -> None:
    waiters = JobWaiters(max_waiters=3, max_per_account=2)
    with waiters.register("j1", "a") as one, waiters.register("j2", "a") as two:
        assert one is not None and two is not None
        with waiters.register("j3", "a") as refused:
            assert refused is None  # the account's bound
        with waiters.register("j3", "b") as three:
            assert three is not None
            with waiters.register("j4", "c") as full:
                assert full is None  # the replica's bound
        assert waiters.count == 2
    # Slots come back when their requests end.
    with waiters.register("j5", "a") as again:
        assert again is not None
    assert waiters.count == 0


async def test_a_failing_request_gives_its_slot_back() -> None:
    waiters = JobWaiters(max_waiters=1)
    try:
        with waiters.register("j", "a"):
            raise RuntimeError("the read failed")
    except RuntimeError:
        pass
    with waiters.register("j", "a") as event:
        assert event is not None


async def test_close_wakes_everyone_and_takes_no_more() -> None:
    waiters = JobWaiters()
    with waiters.register("j1", "a") as one, waiters.register("j2", "b") as two:
        assert one is not None and two is not None
        waiters.close()
        assert one.is_set() and two.is_set()
    with waiters.register("j3", "a") as late:
        assert late is None
