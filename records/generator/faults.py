"""Faulty rows for testing ingestion, each with the outcome ingestion must produce.

Every fault is a copy of a distinct, randomly chosen existing row, altered in one way and
appended after the original rows, so no valid row is lost or depends on a faulty one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from records.generator.files import amount_text, share_text, to_file_frame
from records.generator.subjects import make_uscc, new_organisation_body
from records.identifiers import USCC_ALPHABET
from records.regions import DISTRICT_CODES
from records.tables import TABLE_ORDER, FieldKind, TableSpec, table_spec

__all__ = ["FAULT_KINDS", "InjectedFault", "inject_faults"]

FAULT_KINDS: Final = (
    "invalid_identifier",
    "invalid_date",
    "date_after_report",
    "invalid_enum",
    "invalid_amount",
    "unknown_subject",
    "duplicate",
    "conflicting_version",
    "restatement",
)
EXPECTED: Final = {
    "invalid_identifier": "invalid_identifier",
    "invalid_date": "invalid_date",
    "date_after_report": "date_after_report",
    "invalid_enum": "invalid_enum",
    "invalid_amount": "invalid_amount",
    "unknown_subject": "unknown_subject",
    "duplicate": "duplicate",
    "conflicting_version": "conflicting_version",
    "restatement": "accepted",
}
_MIN_PER_KIND: Final = 3
_RESIDENT_ALPHABET: Final = "0123456789X"
_IMPOSSIBLE_DATES: Final = ("2023-02-30", "2024-13-01", "2025-04-31", "2023-00-10", "2022-06-00")
_IMPOSSIBLE_MONTHS: Final = ("2024-13", "2023-00", "2025-14")
_TS_FORMAT: Final = "%Y-%m-%dT%H:%M:%S"
_SUBJECT_TABLES: Final = ("credit_account", "public_record", "credit_inquiry", "default_event")


@dataclass(frozen=True)
class InjectedFault:
    table: str
    line: int  # physical line in the CSV written by write_files (header = line 1)
    kind: str
    expected: str  # a quarantine reason code, "duplicate" or "accepted"
    field: str | None


# A planned fault: the altered rows and, per row, the field that is wrong.
Altered = tuple[pl.DataFrame, list[str | None]]


def inject_faults(
    frames: dict[str, pl.DataFrame], rate: float, seed: int
) -> tuple[dict[str, pl.DataFrame], list[InjectedFault]]:
    """All tables as file (string) frames with faulty rows appended, and what was injected.

    About ``rate * len(table)`` rows are added per table, spread over the fault kinds that
    apply to it (at least a few of each when ``rate > 0`` and the table is not empty).
    Deterministic per ``seed``.
    """
    if rate < 0:
        raise ValueError("rate must not be negative")
    sequence = np.random.SeedSequence(entropy=seed & 0xFFFF_FFFF_FFFF_FFFF, spawn_key=(0xFA17,))
    rng = np.random.Generator(np.random.PCG64(sequence))
    known: set[str] = set()
    if "legal_entity" in frames:
        known = set(to_file_frame("legal_entity", frames["legal_entity"])["uscc"].to_list())
    fresh = _FreshUscc(rng, known)
    out: dict[str, pl.DataFrame] = {}
    faults: list[InjectedFault] = []
    for table in TABLE_ORDER:
        if table not in frames:
            continue
        text = to_file_frame(table, frames[table])
        if rate == 0 or text.height == 0:
            out[table] = text
            continue
        extra, table_faults = _table_faults(rng, table_spec(table), text, rate, fresh)
        out[table] = pl.concat([text, extra], how="vertical") if extra.height else text
        faults += table_faults
    return out, faults


class _FreshUscc:
    """Valid USCCs that no generated entity has (organisation codes starting ``MB``)."""

    def __init__(self, rng: np.random.Generator, known: set[str]) -> None:
        self._rng = rng
        self._known = known
        self._regions = sorted(DISTRICT_CODES)

    def __call__(self, count: int) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            value = int(self._rng.integers(0, 31**6))
            region = self._regions[int(self._rng.integers(0, len(self._regions)))]
            code = make_uscc("1", region, new_organisation_body(value, prefix="MB"))
            if code not in self._known:
                self._known.add(code)
                out.append(code)
        return out


def _table_faults(
    rng: np.random.Generator,
    spec: TableSpec,
    text: pl.DataFrame,
    rate: float,
    fresh: _FreshUscc,
) -> tuple[pl.DataFrame, list[InjectedFault]]:
    planners = _planners(spec, fresh)
    n = text.height
    total = max(round(rate * n), _MIN_PER_KIND * len(planners))
    per_kind = max(_MIN_PER_KIND, -(-total // len(planners)))
    needed = per_kind * len(planners)
    # Candidate source rows: a random sample, large enough for the rarer eligibility rules.
    pool = rng.choice(n, min(n, 12 * needed + 1000), replace=False)
    candidates = text[pool]
    unique_key = _unique_on_key(text, candidates, spec)
    used = np.zeros(pool.shape[0], dtype=np.bool_)
    pieces: list[pl.DataFrame] = []
    meta: list[tuple[str, str | None]] = []
    for kind, (eligible, alter) in planners.items():
        mask = eligible(candidates) & ~used
        if kind in ("duplicate", "conflicting_version", "restatement"):
            mask &= unique_key
        chosen = np.flatnonzero(mask)[:per_kind]
        if chosen.shape[0] == 0:
            continue
        used[chosen] = True
        rows, fields = alter(rng, candidates[chosen])
        pieces.append(rows.select(spec.field_names))
        meta += [(kind, field) for field in fields]
    if not pieces:
        return text.clear(), []
    extra = pl.concat(pieces, how="vertical")
    order = rng.permutation(extra.height)
    extra = extra[order]
    faults = [
        InjectedFault(
            table=spec.name,
            line=n + position + 2,
            kind=meta[source][0],
            expected=EXPECTED[meta[source][0]],
            field=meta[source][1],
        )
        for position, source in enumerate(order.tolist())
    ]
    return extra, faults


def _unique_on_key(text: pl.DataFrame, candidates: pl.DataFrame, spec: TableSpec) -> np.ndarray:
    """For each candidate row: is its natural key unique in the whole table?"""
    key = list(spec.natural_key)
    wanted = candidates.select(key).unique()
    counts = (
        text.select(key).join(wanted, on=key, how="semi", nulls_equal=False).group_by(key).len()
    )
    joined = candidates.select(key).join(counts, on=key, how="left", maintain_order="left")
    out: np.ndarray = (joined["len"] == 1).fill_null(False).to_numpy()
    return out


# -- planners -----------------------------------------------------------------------------

Eligible = Callable[[pl.DataFrame], np.ndarray]
Alter = Callable[[np.random.Generator, pl.DataFrame], Altered]


def _always(frame: pl.DataFrame) -> np.ndarray:
    return np.ones(frame.height, dtype=np.bool_)


def _present(name: str) -> Eligible:
    def check(frame: pl.DataFrame) -> np.ndarray:
        out: np.ndarray = frame[name].is_not_null().to_numpy()
        return out

    return check


def _planners(spec: TableSpec, fresh: _FreshUscc) -> dict[str, tuple[Eligible, Alter]]:
    kinds = {f.name: f.kind for f in spec.fields}
    plans: dict[str, tuple[Eligible, Alter]] = {}
    identifiers = [
        f.name
        for f in spec.fields
        if f.kind in (FieldKind.USCC, FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID)
    ]
    if identifiers:
        plans["invalid_identifier"] = (_always, _invalid_identifier(identifiers, kinds))
    dates = [
        f.name for f in spec.fields if f.kind in (FieldKind.DATE, FieldKind.MONTH) and f.required
    ]
    if dates:
        plans["invalid_date"] = (_always, _invalid_date(dates[0], kinds[dates[0]]))
    if spec.event_dates:
        plans["date_after_report"] = (_always, _date_after_report(spec))
    enums = [f for f in spec.fields if f.kind is FieldKind.ENUM]
    if enums:
        content = [f for f in enums if f.name not in spec.natural_key and f.required] or enums
        chosen = content[0]
        eligible = _always if chosen.required else _present(chosen.name)
        plans["invalid_enum"] = (eligible, _set_value(chosen.name, "not_a_value"))
    amounts = [f for f in spec.fields if f.kind is FieldKind.AMOUNT]
    if amounts:
        chosen_amount = amounts[0]
        eligible = _always if chosen_amount.required else _present(chosen_amount.name)
        plans["invalid_amount"] = (eligible, _set_value(chosen_amount.name, "-100.00"))
    if spec.name == "relation":
        plans["unknown_subject"] = (_always, _unknown_subject("uscc", fresh))
    elif spec.name in _SUBJECT_TABLES:
        plans["unknown_subject"] = (_is_entity, _unknown_subject("subject_id", fresh))
    plans["duplicate"] = (_always, _duplicate)
    content_eligible, change = _content_change(spec)
    plans["conflicting_version"] = (content_eligible, _conflict(change))
    plans["restatement"] = (content_eligible, _restatement(change))
    return plans


def _is_entity(frame: pl.DataFrame) -> np.ndarray:
    out: np.ndarray = (frame["subject_type"] == "entity").fill_null(False).to_numpy()
    return out


def _set_value(name: str, value: str) -> Alter:
    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        return rows.with_columns(pl.lit(value, pl.String).alias(name)), [name] * rows.height

    return alter


def _duplicate(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
    return rows, [None] * rows.height


def _wrong_check(value: str, alphabet: str, offset: int) -> str:
    last = alphabet.index(value[-1]) if value[-1] in alphabet else 0
    return value[:-1] + alphabet[(last + offset) % len(alphabet)]


def _invalid_identifier(names: list[str], kinds: dict[str, FieldKind]) -> Alter:
    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        which = rng.integers(0, len(names), rows.height)
        fields: list[str | None] = [names[i] for i in which.tolist()]
        out = rows
        for i, name in enumerate(names):
            idx = np.flatnonzero(which == i)
            if idx.shape[0] == 0:
                continue
            values = rows[name].gather(idx).to_list()
            if kinds[name] is FieldKind.SUBJECT_ID:
                types = rows["subject_type"].gather(idx).to_list()
            else:
                kind = "entity" if kinds[name] is FieldKind.USCC else "person"
                types = [kind] * idx.shape[0]
            changed = []
            for value, subject_type in zip(values, types, strict=True):
                alphabet = USCC_ALPHABET if subject_type == "entity" else _RESIDENT_ALPHABET
                offset = int(rng.integers(1, len(alphabet)))
                changed.append(_wrong_check(value, alphabet, offset))
            out = out.with_columns(
                out[name].scatter(idx, pl.Series(changed, dtype=pl.String)).alias(name)
            )
        return out, fields

    return alter


def _invalid_date(name: str, kind: FieldKind) -> Alter:
    choices = _IMPOSSIBLE_MONTHS if kind is FieldKind.MONTH else _IMPOSSIBLE_DATES

    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        picked = pl.Series(choices, dtype=pl.String).gather(
            rng.integers(0, len(choices), rows.height)
        )
        return rows.with_columns(picked.alias(name)), [name] * rows.height

    return alter


def _reported_plus(days: int) -> pl.Expr:
    return pl.col("reported_at").str.to_datetime(_TS_FORMAT, time_unit="us") + pl.duration(
        days=days
    )


def _date_after_report(spec: TableSpec) -> Alter:
    """The latest present event date is moved to 40 days after reported_at."""
    event_fields = [spec.field(name) for name in spec.event_dates]

    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        later = _reported_plus(40)
        target = pl.lit(None, pl.String)
        for f in event_fields:  # the last present one wins
            target = pl.when(pl.col(f.name).is_not_null()).then(pl.lit(f.name)).otherwise(target)
        names = rows.select(target.alias("t"))["t"].to_list()
        out = rows.with_columns(
            [
                pl.when(pl.lit(pl.Series(names)) == f.name)
                .then(later.dt.strftime(_event_format(f.kind)))
                .otherwise(pl.col(f.name))
                .alias(f.name)
                for f in event_fields
            ]
        )
        return out, list(names)

    return alter


def _event_format(kind: FieldKind) -> str:
    if kind is FieldKind.MONTH:
        return "%Y-%m"
    if kind is FieldKind.TIMESTAMP:
        return _TS_FORMAT
    return "%Y-%m-%d"


def _unknown_subject(name: str, fresh: _FreshUscc) -> Alter:
    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        values = pl.Series(name, fresh(rows.height), dtype=pl.String)
        return rows.with_columns(values), [name] * rows.height

    return alter


# -- content changes for versions -----------------------------------------------------------

Change = Callable[[pl.DataFrame], pl.DataFrame]


def _plus_one(name: str) -> Change:
    def change(rows: pl.DataFrame) -> pl.DataFrame:
        value = pl.col(name).cast(pl.Float64, strict=False).fill_null(0.0) + 1.0
        return rows.with_columns(amount_text(value).alias(name))

    return change


def _cycle(name: str, values: tuple[str, ...], when_null: str) -> Change:
    following = {v: values[(i + 1) % len(values)] for i, v in enumerate(values)}

    def change(rows: pl.DataFrame) -> pl.DataFrame:
        new = pl.col(name).replace_strict(following, default=when_null, return_dtype=pl.String)
        return rows.with_columns(pl.when(pl.col(name).is_null()).then(pl.lit(when_null))
                                 .otherwise(new).alias(name))  # fmt: skip

    return change


def _other_share(rows: pl.DataFrame) -> pl.DataFrame:
    units = (pl.col("share").cast(pl.Float64) * 10_000.0).round(0).cast(pl.Int64)
    new = pl.when(units > 1).then(units - 1).otherwise(units + 1)
    return rows.with_columns(share_text(new.cast(pl.Float64) / 10_000.0).alias("share"))


def _content_change(spec: TableSpec) -> tuple[Eligible, Change]:
    """A non-key, non-date field and how to change it to another valid value."""
    if spec.name == "legal_entity":
        return _always, _plus_one("registered_capital")
    if spec.name == "natural_person":
        return _always, _cycle("education", spec.field("education").values, "bachelor")
    if spec.name == "relation":
        return _present("share"), _other_share
    if spec.name == "credit_account":
        return _always, _plus_one("credit_limit")
    if spec.name == "repayment":
        return _always, _plus_one("balance")
    if spec.name == "credit_inquiry":
        return _always, _cycle("purpose", spec.field("purpose").values, "loan_approval")
    if spec.name in ("public_record", "default_event"):
        return _always, _plus_one("amount")
    raise ValueError(f"no content change defined for table {spec.name!r}")


def _conflict(change: Change) -> Alter:
    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        return change(rows), [None] * rows.height

    return alter


def _restatement(change: Change) -> Alter:
    def alter(rng: np.random.Generator, rows: pl.DataFrame) -> Altered:
        later = _reported_plus(1).dt.strftime(_TS_FORMAT).alias("reported_at")
        return change(rows).with_columns(later), [None] * rows.height

    return alter
