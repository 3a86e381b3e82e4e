"""Alerts for watching platforms: what changed about a monitored subject (no gRPC here).

A refresh compares each watched subject's decision before and after; every change worth
telling — a warning raised or cleared, a grade change, a score move of at least the
configured points — becomes an :class:`Alert` for each platform watching the subject.
Alerts are kept in the store (table ``alert``) with ids that increase in commit order, so a
platform that reconnects with the last id it processed gets everything after it, nothing
twice; :meth:`AlertLog.wait` wakes the open streams when new ones are committed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from models.decisions import (
    RelatedPartyRef,
    SubjectDecision,
    WarningFlag,
    flag_from_record,
    flag_record,
)
from records.store import RecordStore

__all__ = ["Alert", "AlertKind", "AlertLog", "Change", "changes"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alert (
    alert_id BIGINT NOT NULL,
    client VARCHAR NOT NULL,
    subject_type VARCHAR NOT NULL,
    subject_key VARCHAR NOT NULL,
    reference VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    raised_at TIMESTAMP NOT NULL,
    decision_id VARCHAR NOT NULL,
    detail VARCHAR NOT NULL
)
"""


class AlertKind(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    GRADE_CHANGE = "grade_change"
    SCORE_MOVE = "score_move"


@dataclass(frozen=True)
class Change:
    """One change of a subject's decision worth an alert."""

    kind: AlertKind
    warning: WarningFlag | None = None  # RAISED, CLEARED
    old_grade: str | None = None  # GRADE_CHANGE, SCORE_MOVE
    new_grade: str | None = None
    old_score: int | None = None
    new_score: int | None = None

    @property
    def via(self) -> RelatedPartyRef | None:
        return None if self.warning is None else self.warning.via


@dataclass(frozen=True)
class Alert:
    """A change as told to one platform (``alert_id`` 0 until stored)."""

    alert_id: int
    client: str
    subject_type: str
    subject_key: str
    reference: str
    change: Change
    raised_at: datetime
    decision_id: str  # the decision-log entry that recorded the new state


def _flag_identity(flag: WarningFlag) -> tuple[str, str | None]:
    return flag.code, None if flag.via is None else flag.via.subject_key


def changes(
    old: SubjectDecision | None, new: SubjectDecision, *, score_move_points: int
) -> list[Change]:
    """What changed from ``old`` to ``new`` (a subject new to the book: its flags, as
    raised). A flag is the same flag when its code and related party are; a grade change
    is reported instead of (not with) the score move that made it."""
    before = {} if old is None else {_flag_identity(f): f for f in old.warnings}
    after = {_flag_identity(f): f for f in new.warnings}
    out = [Change(AlertKind.RAISED, warning=f) for k, f in after.items() if k not in before]
    out += [Change(AlertKind.CLEARED, warning=f) for k, f in before.items() if k not in after]
    if old is not None:
        was, now = old.decision, new.decision
        moved = (
            Change(
                AlertKind.GRADE_CHANGE,
                old_grade=was.grade,
                new_grade=now.grade,
                old_score=was.score,
                new_score=now.score,
            )
            if was.grade != now.grade
            else None
        )
        if moved is None and abs(now.score - was.score) >= score_move_points:
            moved = Change(
                AlertKind.SCORE_MOVE,
                old_grade=was.grade,
                new_grade=now.grade,
                old_score=was.score,
                new_score=now.score,
            )
        if moved is not None:
            out.append(moved)
    return out


def _detail(change: Change) -> str:
    record: dict[str, Any] = {k: v for k, v in asdict(change).items() if k != "warning"}
    record["kind"] = change.kind.value
    record["warning"] = None if change.warning is None else flag_record(change.warning)
    return json.dumps(record, sort_keys=True)


def _change(detail: str) -> Change:
    record = json.loads(detail)
    warning = record.pop("warning")
    return Change(
        **{**record, "kind": AlertKind(record["kind"])},
        warning=None if warning is None else flag_from_record(warning),
    )


class AlertLog:
    """The stored alerts, numbered per platform (1, 2, ... in commit order, so one
    platform's ids say nothing of another's traffic). ``append`` belongs to one writer at
    a time (the refresh); ``after`` and ``wait`` are safe from any number of streams."""

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._changed = threading.Condition()
        self._write_lock = threading.Lock()
        self._version = 0  # bumped by every append: what streams wait on
        with store.cursor() as cursor:
            cursor.run(_SCHEMA)
            rows = cursor.query("SELECT client, max(alert_id) FROM alert GROUP BY client")
        self._last = {client: int(last) for client, last in rows}

    @property
    def version(self) -> int:
        with self._changed:
            return self._version

    def last_id(self, client: str) -> int:
        """The id of ``client``'s newest stored alert (0: none yet)."""
        with self._changed:
            return self._last.get(client, 0)

    def append(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store ``alerts`` in one transaction, each numbered on from its platform's last
        id; wake the waiting streams once they are durable. Returns them with their ids."""
        if not alerts:
            return []
        with self._write_lock:
            last = dict(self._last)
            numbered = []
            for alert in alerts:
                last[alert.client] = last.get(alert.client, 0) + 1
                numbered.append(replace(alert, alert_id=last[alert.client]))
            rows = [
                (
                    a.alert_id,
                    a.client,
                    a.subject_type,
                    a.subject_key,
                    a.reference,
                    a.change.kind.value,
                    a.raised_at.astimezone(UTC).replace(tzinfo=None),
                    a.decision_id,
                    _detail(a.change),
                )
                for a in numbered
            ]
            with self._store.cursor() as cursor, cursor.transaction():
                cursor.connection.executemany(
                    "INSERT INTO alert VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
            with self._changed:
                self._last = last
                self._version += 1
                self._changed.notify_all()
        return numbered

    def after(
        self, client: str, after_id: int, kinds: Collection[AlertKind], limit: int
    ) -> list[Alert]:
        """``client``'s alerts with an id above ``after_id`` (of ``kinds``; empty = all),
        oldest first, at most ``limit``."""
        kind_filter = sorted(k.value for k in kinds) or [k.value for k in AlertKind]
        with self._store.cursor() as cursor:
            rows = cursor.query(
                "SELECT alert_id, client, subject_type, subject_key, reference, raised_at, "
                "decision_id, detail FROM alert WHERE client = ? AND alert_id > ? "
                "AND kind IN (SELECT unnest(?)) ORDER BY alert_id LIMIT ?",
                [client, after_id, kind_filter, limit],
            )
        return [
            Alert(
                alert_id=int(row[0]),
                client=row[1],
                subject_type=row[2],
                subject_key=row[3],
                reference=row[4],
                change=_change(row[7]),
                raised_at=row[5].replace(tzinfo=UTC),
                decision_id=row[6],
            )
            for row in rows
        ]

    def wait(self, version: int, timeout: float) -> bool:
        """Block until alerts were stored since ``version`` (True) or ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self._version > version, timeout)
