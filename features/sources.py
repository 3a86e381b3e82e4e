"""Point-in-time reads of the records store.

Each query returns, for one as-of date, the latest version of every record reported by
the end of that day (``reported_at < as_of + 1 day``) whose event dates are not after it.
The SQL is literal and parameterised; results cross to polars through Arrow. When a set of
subjects is given, the reads are restricted to them (a ``$keys`` list parameter; each
restriction is on one indexed column, so that a scoped read is a few index lookups).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import polars as pl

from records.pseudonym import is_person_key
from records.store import RecordStore
from records.tables import TABLES

__all__ = [
    "INQUIRIES_SQL",
    "PUBLIC_RECORDS_SQL",
    "PointInTime",
    "SharedCreditReads",
    "Sources",
    "latest_versions",
    "load_defaults",
    "load_relations",
    "load_sources",
    "read_all_defaults",
    "read_all_relations",
    "read_credit",
    "read_frame",
    "read_inquiries",
    "read_params",
    "valid_relation_versions",
]


@dataclass(frozen=True)
class PointInTime:
    as_of: date
    retention_years: int = 5

    @property
    def reported_before(self) -> datetime:
        return datetime.combine(self.as_of + timedelta(days=1), time())

    @property
    def retention_start(self) -> date:
        try:
            return self.as_of.replace(year=self.as_of.year - self.retention_years)
        except ValueError:  # 29 February
            return self.as_of.replace(year=self.as_of.year - self.retention_years, day=28)


@dataclass
class Sources:
    entities: pl.DataFrame
    persons: pl.DataFrame
    relations: pl.DataFrame
    accounts: pl.DataFrame
    repayments: pl.DataFrame
    public_records: pl.DataFrame
    inquiries: pl.DataFrame
    defaults: pl.DataFrame


# ``$all`` is true for a full build; otherwise ``$keys`` lists the subject keys in scope.

_ENTITIES = """
SELECT uscc AS subject_key, industry, region_code,
       CAST(registered_capital AS DOUBLE) AS registered_capital,
       established_on, status, status_date, reported_at
FROM legal_entity
WHERE reported_at < $cutoff AND established_on <= $as_of
  AND ($all OR uscc IN (SELECT unnest($keys)))
"""

_PERSONS = """
SELECT person_key AS subject_key, birth_date, id_region, residence_region, education,
       reported_at
FROM natural_person
WHERE reported_at < $cutoff
  AND ($all OR person_key IN (SELECT unnest($keys)))
"""

# Ranges on event dates and times (period, inquired_at) are applied in polars after the
# read, not in SQL: with them DuckDB gives up the index on a scoped read (20 ms instead of
# 2 ms for one subject's inquiries; 30 instead of 15 for its repayment months).
# The reads return every version reported by the cut-off; ``latest_versions`` keeps the newest per
# natural key (in polars: a window in SQL costs milliseconds per scoped read).
# Relations are read by entity keys and by person keys separately (one indexed column each).
_RELATIONS_OF_ENTITIES = """
SELECT source, uscc, person_key, role, CAST(share * 10000 AS BIGINT) AS share_bp, valid_from,
       valid_to, reported_at
FROM relation
WHERE reported_at < $cutoff AND valid_from <= $as_of
  AND ($all OR uscc IN (SELECT unnest($keys)))
"""

_RELATIONS_OF_PERSONS = """
SELECT source, uscc, person_key, role, CAST(share * 10000 AS BIGINT) AS share_bp, valid_from,
       valid_to, reported_at
FROM relation
WHERE reported_at < $cutoff AND valid_from <= $as_of
  AND person_key IN (SELECT unnest($keys))
"""

_ACCOUNTS = """
SELECT source, account_id, subject_type, subject_key, product, opened_on, maturity_on,
       closed_on, CAST(credit_limit * 100 AS BIGINT) AS credit_limit_cents, guarantee_type,
       reported_at
FROM credit_account
WHERE reported_at < $cutoff AND opened_on <= $as_of
  AND ($all OR subject_key IN (SELECT unnest($keys)))
"""

# Money crosses as integer cents and shares as basis points, so that sums are exact and
# do not depend on the order in which threads add them: a replayed decision must
# recompute the same features bit for bit.
# Repayment is the bulk: the latest version per account-month by arg_max (a hash
# aggregate, cheaper than a window sort), over the retention period only, keyed by the
# integer account number of the accounts read just before (``_accounts_read``), so that
# no strings cross for the tens of millions of rows.
_REPAYMENTS = """
SELECT a.account_no, l.period,
       CAST(l.v.balance * 100 AS BIGINT) AS balance_cents,
       CAST(l.v.amount_due * 100 AS BIGINT) AS amount_due_cents,
       CAST(l.v.amount_paid * 100 AS BIGINT) AS amount_paid_cents,
       l.v.overdue_days AS overdue_days,
       CAST(l.v.overdue_amount * 100 AS BIGINT) AS overdue_amount_cents,
       l.v.status AS status
FROM (
    -- The newest version of each month. Few months are ever restated, so only those go
    -- through arg_max; the rest are taken as they are (the GROUP BY of every month with
    -- its payload took 7-11 s of a 1M job's read, this 5-6 s).
    WITH visible AS (
        SELECT source, account_id, period, reported_at,
               struct_pack(balance, amount_due, amount_paid, overdue_days,
                           overdue_amount, status) AS v
        FROM repayment
        WHERE reported_at < $cutoff
          AND ($all OR account_id IN (SELECT unnest($account_ids)))
    ), restated AS (
        SELECT source, account_id, period FROM visible
        GROUP BY source, account_id, period HAVING count(*) > 1
    )
    SELECT source, account_id, period, v
    FROM visible ANTI JOIN restated USING (source, account_id, period)
    UNION ALL
    SELECT source, account_id, period, arg_max(v, reported_at)
    FROM visible SEMI JOIN restated USING (source, account_id, period)
    GROUP BY source, account_id, period
) l
JOIN _accounts_read a USING (source, account_id)
"""

PUBLIC_RECORDS_SQL = """
SELECT source, record_id, subject_key, kind, event_date,
       CAST(amount * 100 AS BIGINT) AS amount_cents, status, cleared_on, reported_at
FROM public_record
WHERE reported_at < $cutoff AND event_date <= $as_of
  AND ($all OR subject_key IN (SELECT unnest($keys)))
"""

INQUIRIES_SQL = """
SELECT inquiry_id, subject_key, source, inquired_at, reported_at
FROM credit_inquiry
WHERE reported_at < $cutoff
  AND ($all OR subject_key IN (SELECT unnest($keys)))
"""

_DEFAULTS = """
SELECT subject_key, min(default_date) AS first_default, max(default_date) AS last_default
FROM default_event
WHERE reported_at < $cutoff AND default_date <= $as_of
  AND default_date >= $retention_start
  AND ($all OR subject_key IN (SELECT unnest($keys)))
GROUP BY subject_key
"""


def read_frame(store: RecordStore, sql: str, params: dict[str, object]) -> pl.DataFrame:
    names = {name for name in params if f"${name}" in sql}
    relation = store.connection.sql(sql, params={k: params[k] for k in names})
    table = relation.to_arrow_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _repayments(
    store: RecordStore, accounts: pl.DataFrame, params: dict[str, object]
) -> pl.DataFrame:
    keys = accounts.select(pl.col("account_no").cast(pl.Int64), "source", "account_id")
    account_ids = [] if params["all"] else accounts["account_id"].unique().to_list()
    store.connection.register("_accounts_read", keys.to_arrow())
    try:
        months = read_frame(store, _REPAYMENTS, params | {"account_ids": account_ids})
    finally:
        store.connection.unregister("_accounts_read")
    return months.filter(
        (pl.col("period") <= pl.lit(params["as_of"]))
        & (pl.col("period") >= pl.lit(params["retention_start"]))
    )


def read_inquiries(store: RecordStore, params: dict[str, object]) -> pl.DataFrame:
    """The newest version of each inquiry made in [inquiry_start, cut-off)."""
    latest = latest_versions(
        read_frame(store, INQUIRIES_SQL, params), TABLES["credit_inquiry"].stored_key
    )
    return latest.filter(
        (pl.col("inquired_at") < pl.lit(params["cutoff"]))
        & (pl.col("inquired_at") >= pl.lit(params["inquiry_start"]))
    )


def read_params(point: PointInTime, subjects: Sequence[str] | None) -> dict[str, object]:
    return {
        "cutoff": point.reported_before,
        "as_of": point.as_of,
        "retention_start": point.retention_start,
        "inquiry_start": datetime.combine(point.as_of - timedelta(days=365), time()),
        "all": subjects is None,
        "keys": sorted(set(subjects)) if subjects is not None else [],
    }


def latest_versions(frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """The newest version (by reported_at) of each record; versions never tie on it."""
    return frame.sort("reported_at").unique(subset=list(key), keep="last").drop("reported_at")


def valid_relation_versions(
    store: RecordStore, point: PointInTime, subjects: Sequence[str] | None
) -> pl.DataFrame:
    """The newest version of each relation valid at ``point`` that involves any of
    ``subjects`` (USCCs or person keys; all when None), with its source and start."""
    params = read_params(point, subjects)
    if subjects is None:
        read = read_frame(store, _RELATIONS_OF_ENTITIES, params)
    else:
        keys: list[str] = params["keys"]  # type: ignore[assignment]
        entities = [k for k in keys if not is_person_key(k)]
        persons = [k for k in keys if is_person_key(k)]
        parts = [
            read_frame(store, sql, params | {"keys": scope})
            for sql, scope in (
                (_RELATIONS_OF_ENTITIES, entities),
                (_RELATIONS_OF_PERSONS, persons),
            )
            if scope
        ]
        if not parts:
            return _empty("relation_versions")
        read = pl.concat(parts)
    latest = latest_versions(read, TABLES["relation"].stored_key)
    valid = pl.col("valid_to").is_null() | (pl.col("valid_to") >= pl.lit(point.as_of))
    return latest.filter(valid)


def _read_relations(
    store: RecordStore, point: PointInTime, subjects: Sequence[str] | None
) -> pl.DataFrame:
    return valid_relation_versions(store, point, subjects).drop("source", "valid_from", "valid_to")


def read_all_relations(store: RecordStore, point: PointInTime) -> pl.DataFrame:
    """Every relation valid at ``point``."""
    return _read_relations(store, point, None)


def read_all_defaults(store: RecordStore, point: PointInTime) -> pl.DataFrame:
    """Every subject's defaults within the retention period, as of ``point``."""
    return read_frame(store, _DEFAULTS, read_params(point, None))


def load_relations(store: RecordStore, point: PointInTime, subjects: Sequence[str]) -> pl.DataFrame:
    """Relations valid at ``point`` that involve any of ``subjects`` (USCCs or person keys)."""
    return _read_relations(store, point, subjects)


def load_defaults(store: RecordStore, point: PointInTime, subjects: Sequence[str]) -> pl.DataFrame:
    """Defaults within the retention period of ``subjects``, as of ``point``."""
    return read_frame(store, _DEFAULTS, read_params(point, subjects))


# Frames of reads that a scope makes pointless (no entity in it, or no relations wanted).
_EMPTY: dict[str, dict[str, pl.DataType]] = {
    "entities": {
        "subject_key": pl.String(),
        "industry": pl.String(),
        "region_code": pl.String(),
        "registered_capital": pl.Float64(),
        "established_on": pl.Date(),
        "status": pl.String(),
        "status_date": pl.Date(),
    },
    "persons": {
        "subject_key": pl.String(),
        "birth_date": pl.Date(),
        "id_region": pl.String(),
        "residence_region": pl.String(),
        "education": pl.String(),
    },
    "relations": {
        "uscc": pl.String(),
        "person_key": pl.String(),
        "role": pl.String(),
        "share_bp": pl.Int64(),
    },
    "relation_versions": {
        "source": pl.String(),
        "uscc": pl.String(),
        "person_key": pl.String(),
        "role": pl.String(),
        "share_bp": pl.Int64(),
        "valid_from": pl.Date(),
        "valid_to": pl.Date(),
    },
    "defaults": {"subject_key": pl.String(), "first_default": pl.Date(), "last_default": pl.Date()},
}


def _empty(name: str) -> pl.DataFrame:
    return pl.DataFrame(schema=_EMPTY[name])


def read_credit(store: RecordStore, params: dict[str, object]) -> tuple[pl.DataFrame, pl.DataFrame]:
    accounts = (
        latest_versions(read_frame(store, _ACCOUNTS, params), TABLES["credit_account"].stored_key)
        .sort("source", "account_id")
        .with_row_index("account_no")
    )
    return accounts, _repayments(store, accounts, params)


class SharedCreditReads:
    """Accounts and repayment months read once for the passes of one job over the same
    point in time and subjects: the feature build and the warning rules both read them, and
    at 1M subjects that is 23M repayment months. Give the same object to both; a read with
    other parameters is made anew (and kept too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[object, ...], tuple[pl.DataFrame, pl.DataFrame]] = {}

    def read(
        self, store: RecordStore, params: dict[str, object]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        keys = params["keys"]
        assert isinstance(keys, list)
        # What the credit reads depend on (read_params); other entries do not change them.
        wanted = (
            params["cutoff"],
            params["as_of"],
            params["retention_start"],
            params["all"],
            tuple(keys),
        )
        with self._lock:
            found = self._found.get(wanted)
            if found is None:
                found = self._found[wanted] = read_credit(store, params)
        return found


def load_sources(
    store: RecordStore,
    point: PointInTime,
    subjects: Sequence[str] | None = None,
    *,
    related: bool = True,
    credit_reads: SharedCreditReads | None = None,
) -> Sources:
    """Every table as of ``point``; restricted to ``subjects`` (keys) when given. Without
    ``related``, relations and defaults (read only by related-party features) are left
    empty. Accounts and repayments are read on a second cursor meanwhile (or taken from
    ``credit_reads``)."""
    params = read_params(point, subjects)
    keys: list[str] = params["keys"]  # type: ignore[assignment]
    persons_in_scope = subjects is None or any(is_person_key(k) for k in keys)
    entities_in_scope = subjects is None or not all(is_person_key(k) for k in keys)
    with store.cursor() as side, ThreadPoolExecutor(max_workers=1) as pool:
        credit = pool.submit(
            read_credit if credit_reads is None else credit_reads.read, side, params
        )
        entities = (
            latest_versions(read_frame(store, _ENTITIES, params), ["subject_key"])
            if entities_in_scope
            else _empty("entities")
        )
        persons = (
            latest_versions(read_frame(store, _PERSONS, params), ["subject_key"])
            if persons_in_scope
            else _empty("persons")
        )
        relations = _read_relations(store, point, subjects) if related else _empty("relations")
        public_records = latest_versions(
            read_frame(store, PUBLIC_RECORDS_SQL, params), TABLES["public_record"].stored_key
        ).drop("source", "record_id")
        inquiries = read_inquiries(store, params).drop("inquiry_id")
        defaults = read_frame(store, _DEFAULTS, params) if related else _empty("defaults")
        accounts, repayments = credit.result()
    return Sources(
        entities=entities,
        persons=persons,
        relations=relations,
        accounts=accounts,
        repayments=repayments,
        public_records=public_records,
        inquiries=inquiries,
        defaults=defaults,
    )
