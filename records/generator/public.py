"""Public records (courts, market regulator, tax) and credit report inquiries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from records.generator.accounts import LENDER_MATRIX, N_LENDERS, Accounts, P
from records.generator.params import (
    DAY_US,
    F64,
    I64,
    NONE,
    Calendar,
    month_start,
    time_of_day,
    uniform_days,
)
from records.tables import INQUIRY_PURPOSES, PUBLIC_RECORD_KINDS

__all__ = ["Inquiries", "PublicRecords", "make_inquiries", "make_public_records"]

K: Final = {name: i for i, name in enumerate(PUBLIC_RECORD_KINDS)}
Q: Final = {name: i for i, name in enumerate(INQUIRY_PURPOSES)}

# kind: (annual rate for an average entity, risk slope, annual rate for a person, slope)
_RATES: Final[dict[str, tuple[float, float, float, float]]] = {
    "court_judgment": (0.020, 0.9, 0.006, 1.0),
    "enforcement": (0.010, 1.2, 0.004, 1.3),
    "dishonest_debtor": (0.004, 1.6, 0.002, 1.6),
    "consumption_restriction": (0.002, 1.5, 0.002, 1.6),
    "administrative_penalty": (0.050, 0.4, 0.004, 0.3),
    "tax_violation": (0.015, 0.7, 0.001, 0.5),
    "business_abnormal": (0.050, 0.8, 0.0, 0.0),
    "serious_violation": (0.003, 1.2, 0.0, 0.0),
    "equity_pledge": (0.020, 0.2, 0.0, 0.0),
    "chattel_mortgage": (0.020, 0.1, 0.0, 0.0),
}
# kind: (median amount for an entity, for a person, log-sd); 0 = no amount.
_AMOUNTS: Final[dict[str, tuple[float, float, float]]] = {
    "court_judgment": (300_000, 50_000, 1.2),
    "enforcement": (250_000, 40_000, 1.2),
    "dishonest_debtor": (400_000, 60_000, 1.2),
    "consumption_restriction": (0, 0, 0),
    "administrative_penalty": (20_000, 2_000, 1.2),
    "tax_violation": (100_000, 10_000, 1.3),
    "business_abnormal": (0, 0, 0),
    "serious_violation": (0, 0, 0),
    "equity_pledge": (2_000_000, 0, 1.0),
    "chattel_mortgage": (500_000, 0, 1.0),
}
_CLEARED: Final = {
    "court_judgment": 0.5,
    "enforcement": 0.35,
    "dishonest_debtor": 0.2,
    "consumption_restriction": 0.25,
    "administrative_penalty": 0.7,
    "tax_violation": 0.5,
    "business_abnormal": 0.45,
    "serious_violation": 0.15,
    "equity_pledge": 0.5,
    "chattel_mortgage": 0.5,
}
_CASE_CODE: Final = {
    "court_judgment": "MC",
    "enforcement": "ZX",
    "dishonest_debtor": "SX",
    "consumption_restriction": "XG",
    "administrative_penalty": "XC",
    "tax_violation": "SW",
    "business_abnormal": "YC",
    "serious_violation": "YZ",
    "equity_pledge": "GQ",
    "chattel_mortgage": "DC",
}
# After a default: (kind, probability, days after the default: low, high).
_AFTER_DEFAULT: Final = (
    ("court_judgment", 0.35, 30, 240),
    ("enforcement", 0.25, 90, 400),
    ("dishonest_debtor", 0.12, 150, 500),
    ("consumption_restriction", 0.08, 150, 500),
)


def public_sources(home: str) -> tuple[str, ...]:
    return (f"COURT-{home}", f"AMR-{home}", f"TAX-{home}", f"ENV-{home}")


def _source_of(kind: str) -> int:
    if kind in ("court_judgment", "enforcement", "dishonest_debtor", "consumption_restriction"):
        return 0
    if kind == "tax_violation":
        return 2
    return 1


@dataclass(frozen=True)
class PublicRecords:
    subject: I64
    kind: I64
    day: I64
    amount: F64  # NaN = absent
    cleared_day: I64  # -1 = active
    source: I64  # index into public_sources()
    record_id: pl.Series
    reported_us: I64


def make_public_records(
    rng: np.random.Generator,
    risk: F64,  # per global subject
    is_person: np.ndarray,
    low_day: I64,  # per subject: earliest possible record (founding / adulthood)
    capital: F64,  # per subject (persons: unused)
    first_default: I64,  # per subject: first default day, -1 = none
    cal: Calendar,
) -> PublicRecords:
    n = risk.shape[0]
    span_low = cal.start_day - 730
    span_high = cal.end_day - 3
    years = (span_high - span_low) / 365.25
    subjects: list[I64] = []
    kinds: list[I64] = []
    days: list[I64] = []
    for name, (e_rate, e_slope, p_rate, p_slope) in _RATES.items():
        rate = np.where(is_person, p_rate, e_rate)
        slope = np.where(is_person, p_slope, e_slope)
        lam = rate * years * np.exp(slope * risk - slope**2 / 2.0)
        count = np.minimum(rng.poisson(lam), 5)
        who = np.repeat(np.arange(n, dtype=np.int64), count)
        low = np.maximum(low_day[who], span_low)
        fine = low <= span_high
        who, low = who[fine], low[fine]
        subjects.append(who)
        kinds.append(np.full(who.shape[0], K[name], dtype=np.int64))
        days.append(uniform_days(rng, low, np.full(who.shape[0], span_high, dtype=np.int64)))
    defaulted = np.flatnonzero(first_default >= 0)
    for name, prob, after_low, after_high in _AFTER_DEFAULT:
        who = defaulted[rng.random(defaulted.shape[0]) < prob]
        day = first_default[who] + rng.integers(after_low, after_high, who.shape[0])
        fine = day <= span_high
        subjects.append(who[fine])
        kinds.append(np.full(int(fine.sum()), K[name], dtype=np.int64))
        days.append(day[fine])
    subject = np.concatenate(subjects)
    kind = np.concatenate(kinds)
    day = np.concatenate(days)
    m = int(subject.shape[0])
    person = is_person[subject]

    amount = np.full(m, np.nan)
    cleared = np.full(m, -1, dtype=np.int64)
    source = np.zeros(m, dtype=np.int64)
    u = rng.random(m)
    for name, code in K.items():
        rows = np.flatnonzero(kind == code)
        k = rows.shape[0]
        if k == 0:
            continue
        e_median, p_median, sigma = _AMOUNTS[name]
        median = np.where(person[rows], p_median, e_median)
        if name == "equity_pledge":
            median = capital[subject[rows]] * 0.3
        value = median * np.exp(sigma * rng.standard_normal(k))
        amount[rows] = np.where(median > 0, np.round(np.maximum(value, 100.0), -2), np.nan)
        p_clear = np.clip(_CLEARED[name] * np.exp(-0.3 * risk[subject[rows]]), 0.02, 0.95)
        clear_day = day[rows] + rng.integers(20, 600, k)
        clears = (u[rows] < p_clear) & (clear_day <= span_high)
        cleared[rows] = np.where(clears, clear_day, -1)
        source[rows] = _source_of(name)
        if name == "administrative_penalty":  # environment bureau or market regulator
            source[rows] = np.where(rng.random(k) < 0.2, 3, 1)

    # Record numbers: year, case type, running number per source (unique per source).
    order = np.lexsort((subject, day, source))
    subject, kind, day, amount = subject[order], kind[order], day[order], amount[order]
    cleared, source = cleared[order], source[order]
    start_of_source = np.searchsorted(source, source, side="left")
    serial = np.arange(m) - start_of_source + 1
    year = day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    codes = pl.Series([_CASE_CODE[k] for k in PUBLIC_RECORD_KINDS]).gather(kind)
    record_id = pl.DataFrame({"y": year, "c": codes, "s": serial}).select(
        pl.concat_str(
            pl.col("y").cast(pl.String),
            pl.lit("-"),
            pl.col("c"),
            pl.lit("-"),
            pl.col("s").cast(pl.String).str.zfill(7),
        ).alias("record_id")
    )["record_id"]
    backfill = cal.start_day + rng.integers(0, 31, m)
    last_event = np.maximum(day, cleared)
    report_day = np.maximum(last_event + rng.integers(1, 21, m), backfill)
    reported = np.minimum(report_day * DAY_US + time_of_day(rng, m, 0, 12), cal.end_us)
    # Deliver in time order.
    by_time = np.argsort(reported, kind="stable")
    return PublicRecords(
        subject=subject[by_time],
        kind=kind[by_time],
        day=day[by_time],
        amount=amount[by_time],
        cleared_day=cleared[by_time],
        source=source[by_time],
        record_id=record_id.gather(by_time),
        reported_us=reported[by_time],
    )


@dataclass(frozen=True)
class Inquiries:
    subject: I64
    source: I64  # lender index; N_LENDERS = the credit reference centre (self inquiries)
    purpose: I64
    inquired_us: I64
    reported_us: I64
    inquiry_id: pl.Series


def make_inquiries(
    rng: np.random.Generator,
    acc: Accounts,
    closed_day: I64,
    risk: F64,
    is_person: np.ndarray,
    low_day: I64,
    high_day: I64,
    distress: I64,  # per subject, window month offset (NONE = never)
    cal: Calendar,
) -> Inquiries:
    n = risk.shape[0]
    start, end = cal.start_day, cal.end_day
    parts: list[tuple[I64, I64, I64, I64]] = []  # subject, lender, purpose, day

    # 1. The lender looked the subject up before opening the account.
    opened_in = np.flatnonzero(acc.opened >= start + 10)
    card = acc.product[opened_in] == P["credit_card"]
    entity = ~is_person[acc.subject[opened_in]]
    purpose = np.where(card, Q["credit_card_approval"], Q["loan_approval"])
    purpose = np.where(
        entity & (rng.random(opened_in.shape[0]) < 0.15), Q["guarantee_review"], purpose
    )
    parts.append(
        (
            acc.subject[opened_in],
            acc.lender[opened_in],
            purpose,
            acc.opened[opened_in] - rng.integers(0, 11, opened_in.shape[0]),
        )
    )
    # 2. Post-loan monitoring while the account runs.
    run_low = np.maximum(acc.opened, start)
    run_high = np.where(closed_day >= 0, closed_day, end)
    years = np.maximum(run_high - run_low, 0) / 365.25
    count = rng.poisson(0.25 * years * np.exp(0.3 * acc.score))
    rows = np.repeat(np.arange(acc.n, dtype=np.int64), count)
    parts.append(
        (
            acc.subject[rows],
            acc.lender[rows],
            np.full(rows.shape[0], Q["post_loan_management"], dtype=np.int64),
            uniform_days(rng, run_low[rows], np.maximum(run_high[rows], run_low[rows])),
        )
    )
    # 3. Applications that did not (necessarily) lead to an account.
    window_years = cal.months / 12.0
    lam = np.where(is_person, 0.8, 0.5) * window_years / 3.0 * np.exp(0.6 * risk - 0.18)
    count = rng.poisson(lam)
    who = np.repeat(np.arange(n, dtype=np.int64), count)
    lender_weights = LENDER_MATRIX.sum(axis=0)
    cumulative = np.cumsum(lender_weights) / lender_weights.sum()
    lender = np.minimum(
        np.searchsorted(cumulative, rng.random(who.shape[0]), side="right"), N_LENDERS - 1
    )
    person = is_person[who]
    u = rng.random(who.shape[0])
    purpose = np.where(
        person,
        np.where(u < 0.7, Q["loan_approval"], Q["credit_card_approval"]),
        np.where(u < 0.8, Q["loan_approval"], Q["guarantee_review"]),
    )
    parts.append(
        (
            who,
            lender,
            purpose,
            uniform_days(rng, np.full(who.shape[0], start), np.full(who.shape[0], end)),
        )
    )
    # 4. Persons checking their own report at the credit reference centre.
    persons = np.flatnonzero(is_person)
    count = rng.poisson(0.25 * window_years / 3.0, persons.shape[0])
    who = np.repeat(persons, count)
    k = who.shape[0]
    parts.append(
        (
            who,
            np.full(k, N_LENDERS, dtype=np.int64),
            np.full(k, Q["self_inquiry"], dtype=np.int64),
            uniform_days(rng, np.full(k, start), np.full(k, end)),
        )
    )
    # 5. Multi-platform borrowing: ~3% of persons (riskier ones more often) apply to 6-15
    #    distinct lenders within 30 days, often shortly before they get into distress.
    n_burst = round(0.03 * persons.shape[0])
    if n_burst and cal.end_day - 31 >= start:
        weight = np.exp(0.8 * risk[persons])
        who = rng.choice(persons, n_burst, replace=False, p=weight / weight.sum())
        size = rng.integers(6, 16, n_burst)
        keys = np.log(lender_weights)[None, :] + rng.gumbel(size=(n_burst, N_LENDERS))
        ranked = np.argsort(-keys, axis=1)
        take = np.arange(N_LENDERS)[None, :] < size[:, None]
        burst_who = np.repeat(who, size)
        burst_lender = ranked[take]
        d = distress[who]
        before = month_start(cal.start_month + np.minimum(d, cal.months - 1)) - rng.integers(
            0, 90, n_burst
        )
        random_day = uniform_days(rng, np.full(n_burst, start), np.full(n_burst, end - 31))
        first = np.where((d < NONE) & (rng.random(n_burst) < 0.7), before, random_day)
        first = np.clip(first, start, end - 31)
        burst_day = np.repeat(first, size) + rng.integers(0, 30, burst_who.shape[0])
        parts.append(
            (
                burst_who,
                burst_lender.astype(np.int64),
                np.full(burst_who.shape[0], Q["loan_approval"], dtype=np.int64),
                burst_day,
            )
        )

    subject = np.concatenate([p[0] for p in parts]).astype(np.int64)
    source = np.concatenate([p[1] for p in parts]).astype(np.int64)
    purpose = np.concatenate([p[2] for p in parts]).astype(np.int64)
    day = np.concatenate([p[3] for p in parts]).astype(np.int64)
    fine = (day >= np.maximum(low_day[subject], start)) & (
        day <= np.minimum(high_day[subject], end)
    )
    subject, source, purpose, day = subject[fine], source[fine], purpose[fine], day[fine]
    m = subject.shape[0]
    inquired = day * DAY_US + time_of_day(rng, m, 0, 14)  # 08:00-22:00 China time, as UTC
    order = np.argsort(inquired, kind="stable")
    subject, source, purpose, inquired = (
        subject[order],
        source[order],
        purpose[order],
        inquired[order],
    )
    delay = rng.integers(60, 86_400, m) * 1_000_000
    reported = np.minimum(inquired + delay, cal.end_us)
    number = 10_000_000_000 + np.arange(m, dtype=np.int64) * 3 + rng.integers(0, 3, m)
    inquiry_id = pl.Series(number).cast(pl.String)
    inquiry_id = pl.select(pl.concat_str(pl.lit("Q"), pl.lit(inquiry_id))).to_series()
    return Inquiries(subject, source, purpose, inquired, reported, inquiry_id.alias("inquiry_id"))
