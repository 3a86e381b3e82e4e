"""Incremental refresh: new records → features, warnings, decisions and alerts (no gRPC).

Subjects whose records were added are queued; one thread takes whatever is queued, has the
feature store recompute their rows and those of their related parties (the features
issue's ``refresh``), evaluates the warning flags of exactly those subjects, and replaces
their decisions in the book (one reference swap: a Score sees the old or the new decision,
never a mix). Each watched subject whose decision changed gets its alerts: the new state is
logged as a decision for every watching platform (durably, before anyone is told), then the
alerts are stored and the open WatchAlerts streams woken.

Records reported after the end of the served as-of day are stored but do not count until
the next materialisation (features are point in time: see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from audit.entries import decision_entry_bytes
from audit.ids import decision_id
from features.store import FeatureStore
from features.warning_eval import evaluate_warnings
from models.decisions import DecisionBook, SubjectDecision
from service.alerts import Alert, AlertLog, changes
from service.scoring import DecisionRecorder, PendingRecord
from service.watchlists import Watchlists

__all__ = ["RefreshOutcome", "Refresher"]

_log = logging.getLogger("creditrisk.refresh")
_KEY = "subject_key"


def _settled() -> None:
    """The decisions (and their answer parts) live until a refresh replaces them: out of
    the cyclic collector's sight, or each full collection walks them all (~0.3 s with the
    GIL held, every call in flight waiting, at 50k subjects). They hold no reference
    cycles: a replaced one is freed by its reference count as before."""
    gc.freeze()


@dataclass(frozen=True)
class RefreshOutcome:
    touched: int  # subjects whose records were added
    refreshed: int  # subjects whose features, warnings and decision were recomputed
    alerts: list[Alert]
    seconds: float


class Refresher:
    """Owns the feature store's maintenance side once the service runs."""

    def __init__(
        self,
        features: FeatureStore,
        book: DecisionBook,
        watchlists: Watchlists,
        alerts: AlertLog,
        decision_log: DecisionRecorder,
        *,
        retention_years: int,
        score_move_points: int,
    ) -> None:
        self.features = features
        self.book = book
        self.watchlists = watchlists
        self.alerts = alerts
        self.decision_log = decision_log
        self.retention_years = retention_years
        self.score_move_points = score_move_points
        self._queue: set[str] = set()
        self._condition = threading.Condition()
        self._busy = False
        self._stopping = False
        self._explain_due = True  # a freshly built book has no reasons yet
        self._preparers: list[Callable[[list[SubjectDecision]], object]] = []
        self._prepare_due = False
        self._interrupt = threading.Event()  # new work: the reasons can wait
        self.failures = 0
        self.explained = 0
        self.last: RefreshOutcome | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refresh-flags")
        self._thread = threading.Thread(target=self._run, name="refresh", daemon=True)
        self._thread.start()

    def add_preparer(self, prepare: Callable[[list[SubjectDecision]], object]) -> None:
        """Have ``prepare(decisions)`` called in idle time, once the reasons are done, with
        every current decision (a chunk at a time): what answers and log entries take from
        a subject's decision alone is then made before anyone asks (``prepare`` skips what
        it already made for the same decision)."""
        with self._condition:
            self._preparers.append(prepare)
            self._prepare_due = True
            self._condition.notify_all()

    def caught_up(self) -> bool:
        """Whether nothing is queued, being refreshed, or due in idle time (reasons,
        prepared answers)."""
        with self._condition:
            return not (self._queue or self._busy or self._explain_due or self._prepare_due)

    def submit(self, subject_keys: Iterable[str]) -> int:
        """Queue subjects for refresh; returns how many were given."""
        keys = set(subject_keys)
        if keys:
            with self._condition:
                self._queue |= keys
                self._interrupt.set()
                self._condition.notify_all()
        return len(keys)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or being refreshed (reasons may still be due)."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self) -> None:
        """Finish what is queued, then stop (reasons not yet computed stay due)."""
        with self._condition:
            self._stopping = True
            self._interrupt.set()
            self._condition.notify_all()
        self._thread.join()
        self._pool.shutdown()

    def _run(self) -> None:
        """Refreshes first; in idle time, the reasons of decisions that lack them (at start,
        everyone's; after a refresh, the refreshed subjects'), a chunk at a time, giving
        way as soon as new records arrive."""
        while True:
            with self._condition:
                self._condition.wait_for(
                    lambda: (
                        bool(self._queue)
                        or self._stopping
                        or self._explain_due
                        or self._prepare_due
                    )
                )
                if not self._queue and self._stopping:
                    return
                keys = sorted(self._queue)
                self._queue = set()
                self._busy = bool(keys)
                self._interrupt.clear()
            if not keys:
                if self._explain_due:
                    self._explain()
                else:
                    self._prepare()
                continue
            try:
                self.last = self.refresh(keys)
                self._explain_due = True
            except Exception:  # the records are stored; the next materialisation has them
                self.failures += 1
                _log.exception("refresh of %d subjects failed", len(keys))
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _explain(self) -> None:
        started = time.perf_counter()
        done = self.book.explain_pending(stop=self._interrupt)
        self.explained += done
        if not self._interrupt.is_set():
            with self._condition:
                self._explain_due = False
                self._prepare_due = bool(self._preparers)
            if not self._prepare_due:
                _settled()
        if done:
            _log.info(
                "reasons of %d decisions computed in %.1f s", done, time.perf_counter() - started
            )

    def _prepare(self, chunk: int = 4_096) -> None:
        started = time.perf_counter()
        with self._condition:
            preparers = list(self._preparers)
        decisions = self.book.decisions()
        for start in range(0, len(decisions), chunk):
            if self._interrupt.is_set():
                return  # still due: after the refresh
            part = decisions[start : start + chunk]
            for prepare in preparers:
                try:
                    prepare(part)
                except Exception:  # answers are then made on request, as before
                    _log.exception("preparing answers failed")
        with self._condition:
            if not self._interrupt.is_set():
                self._prepare_due = False
        _settled()
        _log.info(
            "answer parts of %d decisions made ahead in %.1f s",
            len(decisions),
            time.perf_counter() - started,
        )

    def refresh(self, subject_keys: list[str]) -> RefreshOutcome:
        """Recompute ``subject_keys`` and everyone around them now, on this thread."""
        started = time.perf_counter()
        as_of = self.book.as_of
        if as_of is None:
            raise RuntimeError("nothing is served yet")
        # The flags of the subjects whose rows change are evaluated on a second cursor
        # while the feature store computes the rows, from the neighbourhood it walked.
        flags: list[Future[pl.DataFrame]] = []

        def evaluate(affected: list[str], ring: list[str]) -> None:
            flags.append(self._pool.submit(self._warnings, as_of, affected, ring))

        rows = self.features.refresh(subject_keys, on_neighbourhood=evaluate)
        affected = rows[_KEY].to_list()
        (warnings,) = [future.result() for future in flags]
        before = {key: self.book.lookup(key) for key in affected if self.watchlists.watchers(key)}
        self.book.update(affected, warnings.filter(warnings[_KEY].is_in(affected)))
        # Their reasons are computed behind (or on the spot for a caller asking first).
        alerts = self._alerts(before)
        elapsed = time.perf_counter() - started
        _log.info(
            "refreshed %d subjects (%d touched) in %.0f ms; %d alerts",
            len(affected),
            len(subject_keys),
            elapsed * 1000,
            len(alerts),
        )
        return RefreshOutcome(len(subject_keys), len(affected), alerts, elapsed)

    def _warnings(self, as_of: date, affected: list[str], ring: list[str]) -> pl.DataFrame:
        with self.features.records.cursor() as cursor:
            return evaluate_warnings(
                cursor, as_of, affected, retention_years=self.retention_years, scope=ring
            )

    def _alerts(self, before: dict[str, SubjectDecision | None]) -> list[Alert]:
        now = datetime.now(UTC)
        pending: list[tuple[PendingRecord, list[Alert]]] = []
        for key, old in before.items():
            new = self.book.lookup(key)
            if new is None:
                continue
            found = changes(old, new, score_move_points=self.score_move_points)
            if not found:
                continue
            for watch in self.watchlists.watchers(key):
                decided = decision_id()
                logged = self.decision_log.submit(
                    decision_entry_bytes(
                        decision_id=decided,
                        decided_at=now,
                        kind="monitoring",
                        method="monitoring",
                        client=watch.client,
                        purpose="post_loan_management",
                        authorization_id=watch.authorization_id,
                        request_id="",
                        subject=new,
                        model=self.book.model,
                        warning_rules_version=self.book.warning_rules_version,
                        reasons_given=False,
                        groups=watch.groups,
                    )
                )
                alerts = [
                    Alert(0, watch.client, new.subject_type, key, watch.reference, c, now, decided)
                    for c in found
                ]
                pending.append((logged, alerts))
        for logged, _ in pending:
            logged.result()  # every decision told is in the log before anyone is told
        return self.alerts.append([alert for _, alerts in pending for alert in alerts])
