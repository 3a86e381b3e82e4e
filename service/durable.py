"""Waiting on the event loop until decisions are in the decision log.

The log's writer thread commits entries in groups (one write and one fsync for all that
were queued). A call on the event loop waits for its entry without holding a thread: it
parks a future beside its entry, and after each group commit the writer tells the loop
once (one ``call_soon_threadsafe`` for the commit, not one per entry: with many calls in
flight a wake-up per entry cost more than the entry); the loop then wakes the calls whose
entries are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from service.scoring import DecisionRecorder, PendingRecord, ScoredDecision

__all__ = ["DurableWaiter"]


class DurableWaiter:
    """Awaits decisions' log entries for the calls of one event loop, on one log (None:
    decisions are not logged, nothing to wait for)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: DecisionRecorder | None) -> None:
        self._loop = loop
        self.log = log
        self._waiting: list[tuple[PendingRecord, asyncio.Future[None]]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        if log is not None:
            log.add_commit_listener(self._committed)

    async def durable(self, answer: ScoredDecision) -> ScoredDecision:
        """``answer`` once its entry is durable; the write's error if it failed."""
        pending = answer.logged
        if pending is not None and not pending.done():
            # Parked before the next wake runs (both on the loop): a commit that lands
            # meanwhile schedules a wake that will find it done.
            future: asyncio.Future[None] = self._loop.create_future()
            self._waiting.append((pending, future))
            await future
        return answer.durable()  # at once now: raises the write's error, if any

    def _committed(self) -> None:
        """On the log's writer thread, after a group commit."""
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._scheduled = False  # a commit from now on schedules another wake
        still: list[tuple[PendingRecord, asyncio.Future[None]]] = []
        for pending, future in self._waiting:
            if not pending.done():
                still.append((pending, future))
            elif not future.done():  # a call cancelled meanwhile has no one to wake
                future.set_result(None)
        self._waiting = still
