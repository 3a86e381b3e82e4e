"""Every subject's decision, computed ahead of the request that asks for it.

A subject's features change only when its records (or its related parties') change or the
as-of date moves, so its whole decision — probability of default, points, grade, reasons,
thin-file marker and warning flags — is computed when the features are materialised or
refreshed, in bulk (TreeSHAP over a batch costs a fraction of what it costs per row). What
is left on a request is a dictionary lookup. :class:`DecisionBook` holds those decisions;
it knows nothing of how they are asked for.

Reasons (TreeSHAP) cost about a hundred times the prediction (~0.5 ms a row here, batched
or not), so a book is first built without them — PD, points, grade, thin-file marker and
warnings for everyone in seconds — and :meth:`DecisionBook.explain_pending` then adds them
in the background; a subject asked about with ``explain`` before its turn is explained on
the spot (the same TreeSHAP, so the same reasons).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl

from features.store import FeatureStore
from features.warnings import WARNING_CATALOG, Severity, warning_catalog_hash
from models.model import Decision, RiskModel
from records.pseudonym import is_person_key

__all__ = [
    "SEVERITY_ORDER",
    "DecisionBook",
    "Evidence",
    "RelatedPartyRef",
    "SubjectDecision",
    "SubjectMemo",
    "WarningFlag",
    "flag_from_record",
    "flag_record",
    "flags_from_frame",
    "subject_decisions",
]

SEVERITY_ORDER = {severity: rank for rank, severity in enumerate(Severity, start=1)}
_RULES = {rule.code: rule for rule in WARNING_CATALOG}


@dataclass(frozen=True)
class Evidence:
    """One record a warning flag cites."""

    record: str  # "<table>:<source>:<id>"
    kind: str | None
    date: date | None
    amount: float | None  # CNY
    limit: float | None
    days_past_due: int | None
    share: float | None

    @property
    def table(self) -> str:
        return self.record.split(":", 1)[0]

    @property
    def source(self) -> str:
        parts = self.record.split(":", 2)
        return parts[1] if len(parts) > 2 else ""


@dataclass(frozen=True)
class RelatedPartyRef:
    """The related party a flag was raised through."""

    role: str  # legal_representative, shareholder or controlled_company
    subject_type: str  # entity or person
    subject_key: str  # USCC, or the person's pseudonym


@dataclass(frozen=True)
class WarningFlag:
    code: str
    severity: Severity
    description: str
    since: date
    evidence: tuple[Evidence, ...]
    via: RelatedPartyRef | None


def flag_record(flag: WarningFlag) -> dict[str, Any]:
    """``flag`` as JSON-ready values, every field kept (:func:`flag_from_record` inverts)."""
    return {
        "code": flag.code,
        "severity": flag.severity.value,
        "description": flag.description,
        "since": flag.since.isoformat(),
        "evidence": [
            {**asdict(item), "date": item.date.isoformat() if item.date else None}
            for item in flag.evidence
        ],
        "via": None if flag.via is None else asdict(flag.via),
    }


def flag_from_record(record: dict[str, Any]) -> WarningFlag:
    return WarningFlag(
        code=record["code"],
        severity=Severity(record["severity"]),
        description=record["description"],
        since=date.fromisoformat(record["since"]),
        evidence=tuple(
            Evidence(**{**item, "date": date.fromisoformat(item["date"]) if item["date"] else None})
            for item in record["evidence"]
        ),
        via=None if record["via"] is None else RelatedPartyRef(**record["via"]),
    )


@dataclass(frozen=True)
class SubjectDecision:
    """What the service answers about one subject as of ``features_as_of``."""

    subject_type: str
    subject_key: str
    features_as_of: date
    decision: Decision
    warnings: tuple[WarningFlag, ...]  # most severe first
    features: npt.NDArray[np.float64]  # the exact catalog-ordered vector decided on
    explained: bool  # reasons computed (a thin file has none to compute)


_Derived = TypeVar("_Derived")


class SubjectMemo(Generic[_Derived]):
    """What ``derive(subject, variant)`` makes of a subject's decision, made once per
    decision: an answer's or a log entry's part that depends on the subject alone is then
    not rebuilt for each request about it. Keyed by subject key and variant, and checked
    by identity: a decision replaced by a refresh is derived anew, and held by a weak
    reference, so a replaced decision is not kept alive. One value per subject of the
    book (and variant) at most: the book bounds it."""

    def __init__(self, derive: Callable[[SubjectDecision, Any], _Derived]) -> None:
        self._derive = derive
        self._values: dict[tuple[str, Hashable], tuple[weakref.ref[SubjectDecision], _Derived]]
        self._values = {}

    def get(self, subject: SubjectDecision, variant: Hashable) -> _Derived:
        key = (subject.subject_key, variant)
        kept = self._values.get(key)
        if kept is not None and kept[0]() is subject:
            return kept[1]
        value = self._derive(subject, variant)
        self._values[key] = (weakref.ref(subject), value)  # a lost race derives it twice
        return value

    def prepare(self, subjects: Iterable[SubjectDecision], variant: Hashable) -> None:
        """Derive ahead of the requests what is not yet kept for ``subjects``."""
        for subject in subjects:
            self.get(subject, variant)


def _evidence(item: dict[str, Any]) -> Evidence:
    raw_date = item.get("date")
    return Evidence(
        record=str(item["record"]),
        kind=item.get("kind"),
        date=date.fromisoformat(raw_date) if raw_date else None,
        amount=item.get("amount"),
        limit=item.get("limit"),
        days_past_due=item.get("days_past_due"),
        share=item.get("share"),
    )


def flags_from_frame(frame: pl.DataFrame) -> dict[str, tuple[WarningFlag, ...]]:
    """The rows of :func:`features.warning_eval.evaluate_warnings`, as flags per subject,
    most severe first (then by code)."""
    if frame.is_empty():
        return {}
    # Column lists and one JSON parse of every row's evidence together: a dict per row and
    # a parse per row took 20 us a flag (9 s for the 472k flags of 1M subjects).
    evidence = json.loads("[" + ",".join(frame["evidence"].to_list()) + "]")
    roles, vias = frame["via_role"].to_list(), frame["via_subject"].to_list()
    out: dict[str, list[WarningFlag]] = {}
    rows = zip(
        frame["subject_key"].to_list(),
        frame["code"].to_list(),
        frame["since"].to_list(),
        evidence,
        roles,
        vias,
        strict=True,
    )
    for subject_key, code, since, items, role, via_key in rows:
        rule = _RULES[code]
        via = None
        if role is not None:
            via = RelatedPartyRef(
                role=role,
                subject_type="person" if is_person_key(via_key) else "entity",
                subject_key=via_key,
            )
        flag = WarningFlag(
            code=rule.code,
            severity=rule.severity,
            description=rule.description,
            since=since,
            evidence=tuple(_evidence(item) for item in items),
            via=via,
        )
        out.setdefault(subject_key, []).append(flag)
    return {
        key: tuple(sorted(flags, key=lambda f: (-SEVERITY_ORDER[f.severity], f.code)))
        for key, flags in out.items()
    }


class DecisionBook:
    """The decisions of every subject in a feature store, by subject key.

    ``lookup`` is safe from any number of threads; ``rebuild`` and ``update`` belong to
    one maintenance thread and replace entries atomically (a reader sees the old or the
    new decision of a subject, never a mix).
    """

    def __init__(self, model: RiskModel, features: FeatureStore) -> None:
        if tuple(features.names) != model.feature_names:
            raise ValueError(
                f"model {model.version} was trained on other features than the running catalog's"
            )
        self.model = model
        self.features = features
        self.warning_rules_version = warning_catalog_hash()[:16]
        self._decisions: dict[str, SubjectDecision] = {}
        self._lock = threading.Lock()

    @property
    def as_of(self) -> date | None:
        return self.features.as_of

    def __len__(self) -> int:
        return len(self._decisions)

    def lookup(self, subject_key: str) -> SubjectDecision | None:
        return self._decisions.get(subject_key)

    def decisions(self) -> list[SubjectDecision]:
        """Every subject's current decision (a snapshot)."""
        return list(self._decisions.values())

    def rebuild(self, warnings: pl.DataFrame) -> None:
        """Decide every subject of the feature store, without reasons (see
        :meth:`explain_pending`); ``warnings`` are the flags raised as of the same date."""
        keys = self.features.subject_keys()
        self._decisions = self._decide(keys, flags_from_frame(warnings))

    def update(self, subject_keys: Iterable[str], warnings: pl.DataFrame) -> int:
        """Decide again the given subjects (after a feature refresh), without reasons, as
        :meth:`rebuild` does; ``warnings`` are the flags of exactly those subjects. Returns
        how many decisions were replaced."""
        keys = sorted(set(subject_keys))
        # Own rows, not views: a view keeps its whole refresh's matrix alive until every
        # row of it is replaced again, so the book would grow with every refresh.
        fresh = self._decide(keys, flags_from_frame(warnings), share_matrix=False)
        with self._lock:
            merged = dict(self._decisions)
            merged.update(fresh)
            self._decisions = merged  # one reference swap: readers never see a half state
        return len(fresh)

    def explained(self, found: SubjectDecision) -> SubjectDecision:
        """``found`` with its reasons, computing them now if the background has not yet."""
        if found.explained:
            return found
        done = self._with_reasons([found])[0]
        self._store_if_current(found, done)
        return done

    def pending(self) -> int:
        return sum(1 for found in self._decisions.values() if not found.explained)

    def explain_pending(
        self, *, chunk: int = 2_048, num_threads: int = 1, stop: threading.Event | None = None
    ) -> int:
        """Compute the reasons of every decision still without them, a chunk at a time
        (one thread by default, leaving the other cores to the requests); returns how
        many were explained."""
        todo = [found for found in self._decisions.values() if not found.explained]
        done = 0
        for start in range(0, len(todo), chunk):
            if stop is not None and stop.is_set():
                break
            part = todo[start : start + chunk]
            for old, new in zip(part, self._with_reasons(part, num_threads), strict=True):
                self._store_if_current(old, new)
            done += len(part)
        return done

    def _store_if_current(self, old: SubjectDecision, new: SubjectDecision) -> None:
        with self._lock:
            # An update() may have replaced the entry meanwhile: never put back an old one.
            if self._decisions.get(old.subject_key) is old:
                self._decisions[old.subject_key] = new

    def _with_reasons(
        self, decisions: Sequence[SubjectDecision], num_threads: int | None = None
    ) -> list[SubjectDecision]:
        if not decisions:
            return []
        matrix = np.vstack([found.features for found in decisions])
        explanations = self.model.explain(matrix, num_threads=num_threads)
        return [
            replace(
                found,
                decision=replace(found.decision, reasons=explanation.reasons),
                explained=True,
            )
            for found, explanation in zip(decisions, explanations, strict=True)
        ]

    def _decide(
        self,
        keys: Sequence[str],
        flags: dict[str, tuple[WarningFlag, ...]],
        *,
        share_matrix: bool = True,
    ) -> dict[str, SubjectDecision]:
        as_of = self.features.as_of
        if as_of is None:
            raise RuntimeError("the feature store has nothing materialised")
        types, matrix = self.features.rows(keys)
        decisions = self.model.decide_batch(matrix, explain=False) if keys else []
        found = subject_decisions(
            as_of, types, keys, matrix, decisions, flags, share_matrix=share_matrix
        )
        return {item.subject_key: item for item in found}


def subject_decisions(
    as_of: date,
    types: Sequence[str],
    keys: Sequence[str],
    matrix: npt.NDArray[np.float64],
    decisions: Sequence[Decision],
    flags: dict[str, tuple[WarningFlag, ...]],
    *,
    explained: bool = False,
    share_matrix: bool = True,
) -> list[SubjectDecision]:
    """One :class:`SubjectDecision` per row of ``matrix`` (made read-only: the decisions
    share its rows, or, without ``share_matrix``, each gets a copy of its own row);
    ``explained`` when ``decisions`` were made with reasons."""
    matrix.setflags(write=False)
    rows = list(matrix) if share_matrix else [_own_row(row) for row in matrix]
    return [
        SubjectDecision(
            subject_type=types[i],
            subject_key=key,
            features_as_of=as_of,
            decision=decisions[i],
            warnings=flags.get(key, ()),
            features=rows[i],
            explained=explained or decisions[i].thin_file,
        )
        for i, key in enumerate(keys)
    ]


def _own_row(row: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    own = row.copy()
    own.setflags(write=False)
    return own
