"""Idempotency: the same request_id from the same client within a window gets the same
answer, however often it is retried.

Entries expire after the window and the oldest go first beyond a size bound, so a flood of
distinct ids cannot grow memory without limit. A request id reused for a different
request (another subject, purpose or method) is an error, not a silent replay.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from service.problems import InvalidRequest

__all__ = ["IdempotencyCache"]

T = TypeVar("T")


class IdempotencyCache(Generic[T]):
    def __init__(
        self,
        window_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Hashable, T]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.window > 0 and self.max_entries > 0

    def get(self, client: str, request_id: str, fingerprint: Hashable) -> T | None:
        """The stored answer of this client's ``request_id``, if still in the window."""
        if not request_id or not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            entry = self._entries.get((client, request_id))
            if entry is None:
                return None
            stored_at, stored_fingerprint, answer = entry
            if now - stored_at > self.window:
                del self._entries[(client, request_id)]
                return None
        if stored_fingerprint != fingerprint:
            raise InvalidRequest(
                "request_id",
                "reused",
                "request_id was already used for a different request within the "
                "idempotency window; use a new request_id for a new request",
            )
        return answer

    def put(self, client: str, request_id: str, fingerprint: Hashable, answer: T) -> T:
        """Store ``answer`` unless an answer is stored already; return the one that holds
        (two concurrent retries of one request both get the first answer)."""
        if not request_id or not self.enabled:
            return answer
        now = self._clock()
        with self._lock:
            existing = self._entries.get((client, request_id))
            if existing is not None and now - existing[0] <= self.window:
                return existing[2] if existing[1] == fingerprint else answer
            self._entries[(client, request_id)] = (now, fingerprint, answer)
            self._entries.move_to_end((client, request_id))
            while self._entries:
                oldest_key, (oldest_at, _, _) = next(iter(self._entries.items()))
                if len(self._entries) <= self.max_entries and now - oldest_at <= self.window:
                    break
                del self._entries[oldest_key]
        return answer
