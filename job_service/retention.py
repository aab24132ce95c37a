"""Removes outputs past their retention period, and outputs deleted on request.

An output's signed URL expires `result_ttl_s` after the job finished
(representation.py stops handing it out at that moment); this sweep then
removes the object itself, every `interval_s`, in batches, oldest first, and
marks the job so it is not looked at again. Every replica may sweep: removing
an object twice is harmless. In a bucket, a lifecycle rule set at start-up
(`expire_objects`) also drops old objects, but the sweep is the guarantee: a
server may have no lifecycle support, and the rule counts whole days.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from job_service.store import JobStore
from lipsync_common.storage import ObjectStore

log = logging.getLogger(__name__)

BATCH = 500


class Retention:
    def __init__(
        self, store: JobStore, results: ObjectStore, ttl_s: float, interval_s: float = 60.0
    ) -> None:
        self.store = store
        self.results = results
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def expire_objects(self) -> bool:
        """Ask the store to expire objects by itself; False where it cannot.

        Never fatal: the sweep removes old objects all the same, so a bucket
        unreachable at start-up must not keep job_service from starting."""
        try:
            return await asyncio.to_thread(self.results.expire_after, self.ttl_s)
        except Exception:
            log.exception("object expiry not set; the retention sweep removes old outputs")
            return False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("retention sweep failed")
            await asyncio.sleep(self.interval_s)

    async def sweep(self, now: float | None = None) -> int:
        """Remove the expired outputs; how many were removed."""
        cutoff = (time.time() if now is None else now) - self.ttl_s
        removed = 0
        while batch := await self.store.outputs_past(cutoff, BATCH):
            failed = await asyncio.to_thread(self._remove_files, [key for _, key in batch])
            # A file that could not be removed stays due: the next sweep tries again.
            done = [job_id for job_id, key in batch if key not in failed]
            if done:
                await self.store.mark_outputs_removed(done)
            removed += len(done)
            if len(batch) < BATCH or not done:
                break
        if removed:
            log.info("expired outputs removed", extra={"fields": {"count": removed}})
        return removed

    async def remove(self, key: str) -> bool:
        """Remove one output now (a deleted job's); False if it could not be."""
        return not await asyncio.to_thread(self._remove_files, [key])

    def _remove_files(self, keys: list[str]) -> set[str]:
        """Remove the files; the keys that could not be removed."""
        failed: set[str] = set()
        for key in keys:
            try:
                self.results.delete(key)
            # Whatever the store raises (a disk error, a bucket's), the key stays due.
            except Exception:
                log.exception("output not removed", extra={"fields": {"key": key}})
                failed.add(key)
        return failed
