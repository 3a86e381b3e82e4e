"""Waiting on the event loop until decisions are in the decision log.

The log's writer thread commits entries in groups (one write and one fsync for all that
were queued). A call on the event loop waits for its entry without holding a thread: the
writer's done-callback hands the entry back to the loop. The callbacks of one group commit
wake the loop once (one ``call_soon_threadsafe`` for all of them, not one each): with many
calls in flight a wake-up per entry cost more than the entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from service.scoring import ScoredDecision

__all__ = ["DurableWaiter"]


class DurableWaiter:
    """Awaits decisions' log entries for the calls of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[asyncio.Future[None]] = []
        self._scheduled = False

    async def durable(self, answer: ScoredDecision) -> ScoredDecision:
        """``answer`` once its entry is durable; the write's error if it failed."""
        pending = answer.logged
        if pending is not None and not pending.done():
            future: asyncio.Future[None] = self._loop.create_future()
            pending.add_done_callback(lambda: self._done(future))
            await future
        return answer.durable()  # at once now: raises the write's error, if any

    def _done(self, future: asyncio.Future[None]) -> None:
        """On the log's writer thread (or at once on the loop, if already durable)."""
        with self._lock:
            self._ready.append(future)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._scheduled = False
        for future in ready:
            if not future.done():  # a call cancelled meanwhile has no one to wake
                future.set_result(None)
