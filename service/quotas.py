"""Per-client quotas: a token bucket per client, refilled continuously.

A client may make ``burst`` calls at once and ``quota_per_second`` calls per second
sustained; a call over quota is refused with the time after which one token is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from service.clients import Client
from service.problems import QuotaExceeded

__all__ = ["QuotaBook"]


class _Bucket:
    __slots__ = ("lock", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.lock = threading.Lock()


class QuotaBook:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, client: Client, count: int = 1) -> None:
        """Spend ``count`` tokens of ``client``'s quota or raise :class:`QuotaExceeded`."""
        now = self._clock()
        key = (client.name, client.key_sha256)  # a re-issued key starts afresh
        bucket = self._buckets.get(key)
        if bucket is None:
            with self._lock:
                bucket = self._buckets.setdefault(key, _Bucket(float(client.burst), now))
        with bucket.lock:
            rate = client.quota_per_second
            bucket.tokens = min(float(client.burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= count:
                bucket.tokens -= count
                return
            wait = (count - bucket.tokens) / rate
        raise QuotaExceeded(
            f"quota of {rate:g} calls per second (burst {client.burst}) used up; "
            f"retry in {wait:.3f} s",
            retry_after=wait,
        )
