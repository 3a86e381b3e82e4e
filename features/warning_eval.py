"""Point-in-time evaluation of the warning-flag catalog, with evidence.

``evaluate_warnings(store, as_of)`` sees exactly what the features see: records reported
by the end of the as-of day, the newest version of each, public records in force
(status 'active'), relations valid on the as-of date. It returns one row per raised flag
(:data:`OUTPUT_SCHEMA`); the evidence is a JSON list of the records the flag cites, each
``{"record": "<table>:<source>:<id>", "kind", "date", "amount", ...}``. All work is
columnar polars: every flag is first a long frame of evidence items, which is then
grouped into rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from features.catalog import SubjectKind
from features.own import REVOLVING_PRODUCTS, month_index
from features.pipeline import neighbourhood
from features.related import MAJOR_SHARE_BP
from features.sources import (
    PUBLIC_RECORDS_SQL,
    PointInTime,
    SharedCreditReads,
    latest_versions,
    read_credit,
    read_frame,
    read_inquiries,
    read_params,
    valid_relation_versions,
)
from features.warnings import (
    DEFAULT_HIGH_UTILISATION,
    DEFAULT_MULTI_PLATFORM_THRESHOLD,
    DEFAULT_MULTI_PLATFORM_WINDOW_DAYS,
    DEFAULT_REPEATED_PENALTIES,
    EVIDENCE_FIELDS,
    FLAG_COLUMNS,
    PUBLIC_RECORD_FLAGS,
    RELATED_PARTY_FLAGS,
    WARNING_CATALOG,
)
from records.pseudonym import PERSON_KEY_LENGTH
from records.store import RecordStore
from records.tables import TABLES

__all__ = ["OUTPUT_SCHEMA", "evaluate_warnings"]

KEY = "subject_key"
GROUP = ["subject_key", "code", "via_role", "via_subject"]
_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "date": pl.Date(),
    "float": pl.Float64(),
    "int": pl.Int64(),
}
OUTPUT_SCHEMA = {name: _TYPES[kind] for name, kind, _ in FLAG_COLUMNS}
ITEM_SCHEMA = {name: _TYPES[kind] for name, kind, _ in EVIDENCE_FIELDS}

# Registration status with the version's source and reporting time (for the record id and
# the fallback ``since``); the features' read drops both.
_ENTITY_STATUS = """
SELECT uscc AS subject_key, source, status, status_date, reported_at
FROM legal_entity
WHERE reported_at < $cutoff AND established_on <= $as_of
  AND ($all OR uscc IN (SELECT unnest($keys)))
"""


def _record(table: str, *ident: pl.Expr | str) -> pl.Expr:
    parts = [pl.col(p) if isinstance(p, str) else p for p in ident]
    return pl.concat_str([pl.lit(f"{table}:"), pl.col("source"), pl.lit(":"), *parts])


_ITEM_COLUMNS = {**{name: _TYPES["string"] for name in GROUP}, "since": pl.Date(), **ITEM_SCHEMA}


def _cny(cents: str) -> pl.Expr:
    return (pl.col(cents) / 100).round(2)


def _items(
    frame: pl.DataFrame, code: str | pl.Expr, since: pl.Expr, **columns: pl.Expr
) -> pl.DataFrame:
    """Evidence items of flag ``code`` (a column or a literal code) held since ``since``:
    GROUP, ``since`` and ITEM_SCHEMA (absent fields null; the subject is KEY by default)."""
    code_column = pl.lit(code) if isinstance(code, str) else code
    columns = {"subject_key": pl.col(KEY), "code": code_column, "since": since, **columns}
    assert set(columns) <= set(_ITEM_COLUMNS), sorted(set(columns) - set(_ITEM_COLUMNS))
    return frame.select(
        columns.get(name, pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in _ITEM_COLUMNS.items()
    )


def _public_items(store: RecordStore, params: dict[str, object], penalties: int) -> pl.DataFrame:
    records = latest_versions(
        read_frame(store, PUBLIC_RECORDS_SQL, params), TABLES["public_record"].stored_key
    )
    active = records.filter(pl.col("status") == "active").with_columns(
        pl.col("kind").replace_strict(PUBLIC_RECORD_FLAGS, default=None).alias("code")
    )
    common = {
        "record": _record("public_record", "record_id"),
        "kind": pl.col("kind"),
        "date": pl.col("event_date"),
        "amount": _cny("amount_cents"),
    }
    flagged = active.filter(pl.col("code").is_not_null())
    simple = _items(
        flagged,
        pl.col("code"),
        pl.col("event_date").min().over(KEY, "code"),
        **common,
    )
    # Repeated penalties hold from the penalty that reached the threshold.
    pen = active.filter(pl.col("kind") == "administrative_penalty")
    nth = pl.col("event_date").sort().get(penalties - 1).over(KEY)
    repeated = _items(
        pen.filter(pl.len().over(KEY) >= penalties),
        pl.lit("W_REPEATED_PENALTIES"),
        nth,
        **common,
    )
    return pl.concat([simple, repeated])


def _status_items(store: RecordStore, params: dict[str, object]) -> pl.DataFrame:
    versions = read_frame(store, _ENTITY_STATUS, params)
    latest = versions.sort("reported_at").unique(subset=[KEY], keep="last")
    ended = latest.filter(pl.col("status").is_in(["revoked", "deregistered"]))
    since = pl.coalesce(pl.col("status_date"), pl.col("reported_at").dt.date())
    return _items(
        ended,
        pl.lit("W_REVOKED_OR_DEREGISTERED"),
        since,
        record=_record("legal_entity", KEY),
        kind=pl.col("status"),
        date=since,
    )


def _credit_items(
    store: RecordStore,
    params: dict[str, object],
    point: PointInTime,
    high_utilisation: float,
    credit_reads: SharedCreditReads | None,
) -> pl.DataFrame:
    read = read_credit if credit_reads is None else credit_reads.read
    accounts, repayments = read(store, params)
    m0 = point.as_of.year * 12 + point.as_of.month - 2  # the last complete month, as features
    rows = repayments.with_columns(
        (m0 - month_index(pl.col("period"))).alias("age"), pl.col("account_no").cast(pl.Int64)
    )
    latest = pl.col("period").arg_max()
    last_ok = pl.col("period").filter(pl.col("overdue_days") == 0).max()
    per_account = rows.group_by("account_no").agg(
        pl.col("period").max().alias("latest_period"),
        pl.col("age").min().alias("latest_age"),
        pl.col("status").get(latest).alias("latest_status"),
        pl.col("overdue_days").get(latest).alias("latest_days"),
        pl.col("overdue_amount_cents").get(latest).alias("latest_overdue_cents"),
        pl.col("balance_cents").get(latest).alias("latest_balance_cents"),
        pl.when(last_ok.is_null())
        .then(pl.col("period").min())
        .otherwise(pl.col("period").filter(pl.col("period") > last_ok).min())
        .alias("run_start"),
    )
    acc = accounts.select(
        pl.col("account_no").cast(pl.Int64),
        KEY,
        "source",
        "account_id",
        "product",
        "credit_limit_cents",
    )
    by_account = per_account.join(acc, on="account_no")
    record = _record("credit_account", "account_id")
    current = (pl.col("latest_age") <= 2) & (pl.col("latest_status") != "closed")
    overdue = by_account.filter(current & (pl.col("latest_days") > 0))
    out = [
        _items(
            overdue,
            pl.lit("W_CURRENTLY_OVERDUE"),
            pl.col("run_start").min().over(KEY),
            record=record,
            kind=pl.lit("overdue"),
            date=pl.col("latest_period"),
            amount=_cny("latest_overdue_cents"),
            days_past_due=pl.col("latest_days"),
        )
    ]
    serious = (
        rows.filter((pl.col("overdue_days") >= 90) & (pl.col("age") < 12))
        .sort("period")
        .group_by("account_no")
        .first()
        .join(acc, on="account_no")
    )
    out.append(
        _items(
            serious,
            pl.lit("W_DELINQUENCY_90_12M"),
            pl.col("period").min().over(KEY),
            record=record,
            kind=pl.lit("delinquency_90_plus"),
            date=pl.col("period"),
            amount=_cny("overdue_amount_cents"),
            days_past_due=pl.col("overdue_days"),
        )
    )
    lines = by_account.filter(current & pl.col("product").is_in(REVOLVING_PRODUCTS))
    limit = pl.col("credit_limit_cents").sum().over(KEY)
    utilisation = pl.col("latest_balance_cents").sum().over(KEY) / limit
    high = lines.filter((limit > 0) & (utilisation >= high_utilisation))
    out.append(
        _items(
            high,
            pl.lit("W_HIGH_UTILISATION"),
            pl.col("latest_period").min().over(KEY),
            record=record,
            kind=pl.col("product"),
            date=pl.col("latest_period"),
            amount=_cny("latest_balance_cents"),
            limit=_cny("credit_limit_cents"),
        )
    )
    return pl.concat(out)


def _inquiry_items(store: RecordStore, params: dict[str, object], threshold: int) -> pl.DataFrame:
    inquiries = read_inquiries(store, params).filter(
        pl.col("inquired_at") >= pl.lit(params["window_start"])
    )
    first = (
        inquiries.sort("inquired_at", "inquiry_id")
        .group_by(KEY, "source")
        .first()
        .filter(pl.len().over(KEY) >= threshold)
    )
    nth = pl.col("inquired_at").sort().get(threshold - 1).over(KEY).dt.date()
    return _items(
        first,
        pl.lit("W_MULTI_PLATFORM_BURST"),
        nth,
        record=_record("credit_inquiry", "inquiry_id"),
        kind=pl.lit("credit_inquiry"),
        date=pl.col("inquired_at").dt.date(),
    )


def _relations(store: RecordStore, params: dict[str, object], point: PointInTime) -> pl.DataFrame:
    subjects = None if params["all"] else [str(key) for key in params["keys"]]  # type: ignore[attr-defined]
    latest = valid_relation_versions(store, point, subjects)
    ident = pl.concat_str(["uscc", "person_key", "role", pl.col("valid_from")], separator="/")
    return latest.with_columns(_record("relation", ident).alias("relation_record"))


_PARTY_FIELDS = ("record", "kind", "date", "amount", "limit", "days_past_due")


def _related_items(relations: pl.DataFrame, own: pl.DataFrame) -> pl.DataFrame:
    """W_RP_* items: the relation, then the related party's own evidence."""
    party = own.select(
        pl.col(KEY).alias("party"),
        pl.col("code").alias("party_code"),
        pl.col("since").alias("party_since"),
        *_PARTY_FIELDS,
    )
    is_major = (pl.col("role") == "shareholder") & (pl.col("share_bp") >= MAJOR_SHARE_BP)
    legal_rep = pl.col("role") == "legal_representative"
    links = [  # (relations, subject column, party column, via_role)
        (legal_rep, "uscc", "person_key", "legal_representative"),
        (is_major, "uscc", "person_key", "shareholder"),
        (legal_rep | is_major, "person_key", "uscc", "controlled_company"),
    ]
    out: list[pl.DataFrame] = []
    for which, subject, other, via_role in links:
        codes = RELATED_PARTY_FLAGS[via_role]
        # One relation per (subject, party): the earliest start among those valid now.
        rel = (
            relations.filter(which)
            .sort("valid_from", "role", "relation_record")
            .unique(subset=[subject, other], keep="first")
        )
        joined = (
            rel.join(party, left_on=other, right_on="party")
            .with_columns(
                pl.col("party_code").replace_strict(codes, default=None).alias("code"),
                pl.col(subject).alias("_subject"),
                pl.col(other).alias("_party"),
            )
            .filter(pl.col("code").is_not_null())
        )
        keyed = {
            "subject_key": pl.col("_subject"),
            "code": pl.col("code"),
            "via_role": pl.lit(via_role),
            "via_subject": pl.col("_party"),
            "since": pl.max_horizontal(
                pl.col("valid_from"), pl.col("party_since").min().over("_subject", "code", "_party")
            ),
            "subject": pl.col("_party"),
        }
        share = (pl.col("share_bp") / 10_000).round(4).alias("share")
        relation = joined.unique(subset=["_subject", "code", "_party"])
        out += [
            _items(
                relation,
                **keyed,
                record=pl.col("relation_record"),
                kind=pl.lit("relation"),
                date=pl.col("valid_from"),
                role=pl.col("role"),
                share=share,
            ),
            _items(
                joined,
                **keyed,
                role=pl.col("role"),
                **{name: pl.col(name) for name in _PARTY_FIELDS},
            ),
        ]
    return pl.concat(out)


def _rows(items: pl.DataFrame) -> pl.DataFrame:
    severity = {rule.code: rule.severity.value for rule in WARNING_CATALOG}
    item_json = pl.struct(
        [pl.col(name).cast(pl.String) if name == "date" else pl.col(name) for name in ITEM_SCHEMA]
    ).struct.json_encode()
    rows = (
        items.unique()
        .sort([*GROUP, "date", "record"], nulls_last=True)
        .group_by(GROUP, maintain_order=True)
        .agg(pl.col("since").min(), item_json.str.join(",").alias("evidence"))
        .with_columns(
            pl.col("code").replace_strict(severity).alias("severity"),
            pl.concat_str([pl.lit("["), pl.col("evidence"), pl.lit("]")]).alias("evidence"),
        )
    )
    return rows.select(list(OUTPUT_SCHEMA)).cast(OUTPUT_SCHEMA)  # type: ignore[arg-type]


def evaluate_warnings(
    store: RecordStore,
    as_of: date,
    subjects: Sequence[str] | None = None,
    *,
    retention_years: int = 5,
    multi_platform_threshold: int = DEFAULT_MULTI_PLATFORM_THRESHOLD,
    high_utilisation: float = DEFAULT_HIGH_UTILISATION,
    repeated_penalties: int = DEFAULT_REPEATED_PENALTIES,
    scope: Sequence[str] | None = None,
    credit_reads: SharedCreditReads | None = None,
) -> pl.DataFrame:
    """Every flag raised as of ``as_of`` (for ``subjects`` only, by key, when given): one row
    per subject, code and related party, sorted; columns :data:`OUTPUT_SCHEMA`. ``scope``
    is the neighbourhood of ``subjects`` (:func:`features.pipeline.neighbourhood`) when the
    caller has walked it already (the feature store's refresh has); by default it is read.
    ``credit_reads`` shares the credit tables' read with the feature build of the job."""
    if multi_platform_threshold < 1 or repeated_penalties < 1:
        raise ValueError("thresholds must be at least 1")
    point = PointInTime(as_of, retention_years)
    if subjects is None:
        scope = None
    elif scope is None:
        scope = neighbourhood(store, point, subjects)
    window = timedelta(days=DEFAULT_MULTI_PLATFORM_WINDOW_DAYS)
    params = read_params(point, scope) | {"window_start": point.reported_before - window}
    own = pl.concat(
        [
            _public_items(store, params, repeated_penalties),
            _status_items(store, params),
            _credit_items(store, params, point, high_utilisation, credit_reads),
            _inquiry_items(store, params, multi_platform_threshold),
        ]
    )
    related = _related_items(_relations(store, params, point), own)
    person = pl.col(KEY).str.len_chars() == PERSON_KEY_LENGTH
    codes = {kind: [r.code for r in WARNING_CATALOG if kind in r.kinds] for kind in SubjectKind}
    applies = (
        pl.when(person)
        .then(pl.col("code").is_in(codes[SubjectKind.PERSON]))
        .otherwise(pl.col("code").is_in(codes[SubjectKind.ENTITY]))
    )
    items = pl.concat([own, related]).filter(applies)
    if subjects is not None:
        items = items.filter(pl.col(KEY).is_in(list(subjects)))
    return _rows(items).sort(GROUP, nulls_last=False)
