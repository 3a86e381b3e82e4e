"""Lenders' watchlists: the subjects each platform monitors (its portfolio).

Kept in the store (table ``watchlist``, one row per platform and subject) and indexed in
memory by subject, so that a refresh finds a changed subject's watchers with a lookup. Only
pseudonyms are kept for natural persons, with the fairness groups the decision log records
(region and age band, gender only if configured), computed once when the subject is watched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from records.store import RecordStore

__all__ = ["Watch", "Watchlists"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watchlist (
    client VARCHAR NOT NULL,
    subject_type VARCHAR NOT NULL,
    subject_key VARCHAR NOT NULL,
    reference VARCHAR NOT NULL,
    authorization_id VARCHAR NOT NULL,
    groups VARCHAR NOT NULL,
    watched_at TIMESTAMP NOT NULL
)
"""


@dataclass(frozen=True)
class Watch:
    """One platform monitoring one subject."""

    client: str
    subject_type: str  # entity or person
    subject_key: str  # USCC, or the person's pseudonym
    reference: str  # the platform's own reference, echoed in alerts
    authorization_id: str  # the subject's consent to monitoring (persons)
    groups: Mapping[str, str] = field(default_factory=dict)  # audit.entries.subject_groups


class Watchlists:
    """Thread-safe; changes are durable in the store before they are visible."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._by_subject: dict[str, dict[str, Watch]] = {}
        self._counts: dict[str, int] = {}
        with store.cursor() as cursor:
            cursor.run(_SCHEMA)
            rows = cursor.query(
                "SELECT client, subject_type, subject_key, reference, authorization_id, groups "
                "FROM watchlist"
            )
        for client, subject_type, key, reference, authorization, groups in rows:
            self._index(
                Watch(client, subject_type, key, reference, authorization, json.loads(groups))
            )

    def _index(self, watch: Watch) -> bool:
        watchers = self._by_subject.setdefault(watch.subject_key, {})
        new = watch.client not in watchers
        watchers[watch.client] = watch
        if new:
            self._counts[watch.client] = self._counts.get(watch.client, 0) + 1
        return new

    def add(self, client: str, watches: Sequence[Watch]) -> tuple[int, int]:
        """Watch (or re-watch, with a new reference) ``watches`` for ``client``; returns
        (subjects added, subjects watched now)."""
        latest = {w.subject_key: w for w in watches}  # the last item for a subject wins
        if any(w.client != client for w in latest.values()):
            raise ValueError("every watch must belong to the calling client")
        now = datetime.now(UTC).replace(tzinfo=None)
        with self._lock:
            self._write(client, list(latest), list(latest.values()), now)
            added = sum(self._index(w) for w in latest.values())
            return added, self._counts.get(client, 0)

    def remove(self, client: str, subject_keys: Sequence[str]) -> tuple[int, int]:
        """Stop watching ``subject_keys`` for ``client``; returns (removed, watched now)."""
        keys = sorted(set(subject_keys))
        with self._lock:
            self._write(client, keys, [], None)
            removed = 0
            for key in keys:
                watchers = self._by_subject.get(key)
                if watchers is not None and watchers.pop(client, None) is not None:
                    removed += 1
                    if not watchers:
                        del self._by_subject[key]
            self._counts[client] = self._counts.get(client, 0) - removed
            return removed, self._counts[client]

    def _write(
        self, client: str, keys: list[str], watches: list[Watch], now: datetime | None
    ) -> None:
        with self._store.cursor() as cursor, cursor.transaction():
            cursor.run(
                "DELETE FROM watchlist WHERE client = ? AND subject_key IN (SELECT unnest(?))",
                [client, keys],
            )
            if watches:
                frame = pl.DataFrame(
                    {
                        "client": [w.client for w in watches],
                        "subject_type": [w.subject_type for w in watches],
                        "subject_key": [w.subject_key for w in watches],
                        "reference": [w.reference for w in watches],
                        "authorization_id": [w.authorization_id for w in watches],
                        "groups": [json.dumps(dict(w.groups), sort_keys=True) for w in watches],
                        "watched_at": [now] * len(watches),
                    }
                )
                cursor.connection.register("_watch_batch", frame.to_arrow())
                try:
                    cursor.run("INSERT INTO watchlist SELECT * FROM _watch_batch")
                finally:
                    cursor.connection.unregister("_watch_batch")

    def watchers(self, subject_key: str) -> tuple[Watch, ...]:
        """Every platform watching the subject."""
        with self._lock:
            return tuple(self._by_subject.get(subject_key, {}).values())

    def watched(self, client: str) -> int:
        with self._lock:
            return self._counts.get(client, 0)
