"""A subject's own features: repayment behaviour, public records, inquiries, attributes.

Every function takes the point-in-time :class:`~features.sources.Sources` and returns one
row per subject key with catalog columns; all work is columnar polars.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import polars as pl

from features.catalog import INQUIRY_DAYS, NEGATIVE_PUBLIC_KINDS, REFERENCE_RATES_BP
from features.sources import PointInTime, Sources
from records.tables import EDUCATION_LEVELS, INDUSTRIES, PUBLIC_RECORD_KINDS

__all__ = [
    "SCALED_FEATURES",
    "apply_scales",
    "entity_attributes",
    "implied_annual_rate",
    "inquiry_features",
    "month_index",
    "person_attributes",
    "public_record_features",
    "repayment_features",
]

KEY = "subject_key"
DAYS_PER_MONTH = 30.4375
REVOLVING_PRODUCTS = ("credit_card", "microloan", "working_capital_loan")
SECURED = ("collateral", "pledge")
ABNORMAL_STATUSES = ("suspended", "revoked", "deregistered")
CARD = "credit_card"
# Ordinal education levels (per_education_level); "unknown" is absent.
EDUCATION_ORDER = {level: rank for rank, level in enumerate(EDUCATION_LEVELS) if level != "unknown"}
F64 = npt.NDArray[np.float64]


def month_index(col: pl.Expr) -> pl.Expr:
    return col.dt.year().cast(pl.Int32) * 12 + col.dt.month().cast(pl.Int32) - 1


def _days_between(earlier: pl.Expr, as_of: pl.Expr) -> pl.Expr:
    # Whole days; the pipeline turns them into months at the very end (SCALED_FEATURES),
    # because polars may divide by a constant through its reciprocal in some kernels and
    # not others, which would make a refreshed row differ from a rebuilt one in the last bit.
    return (as_of - earlier).dt.total_days()


def repayment_features(src: Sources, point: PointInTime) -> pl.DataFrame:
    as_of = pl.lit(point.as_of)
    # Windows count back from the last complete month (age 0): a month is reported after
    # it ends, so the as-of month itself is rarely on file yet (age -1 when it is).
    m0 = point.as_of.year * 12 + point.as_of.month - 2
    age = pl.col("age")
    rows = src.repayments.lazy().with_columns((m0 - month_index(pl.col("period"))).alias("age"))

    due, paid, balance = (
        pl.col("amount_due_cents"),
        pl.col("amount_paid_cents"),
        pl.col("balance_cents"),
    )
    on_time = (pl.col("overdue_days") == 0) & (pl.col("status") == "normal")
    # First per account (integer keys, tens of millions of rows), then per subject.
    per_account: list[pl.Expr] = [
        pl.col("overdue_days").filter(age < 12).max().alias("worst_12m"),
        pl.col("overdue_days").filter(age < 24).max().alias("worst_24m"),
        pl.col("age").filter(pl.col("overdue_days") > 0).min().alias("since"),
        pl.col("amount_due_cents").filter(age < 6).sum().alias("due_6m"),
        pl.col("amount_paid_cents").filter(age < 6).sum().alias("paid_6m"),
        pl.len().alias("months"),
        (pl.col("overdue_days") > 0).sum().alias("late_months"),
        pl.col("balance_cents").filter(age < 12).sum().alias("balance_sum_12m"),
        (age < 12).sum().alias("months_12m"),
        pl.col("amount_due_cents").filter(age < 24).sum().alias("due_24m"),
        pl.col("amount_paid_cents").filter(age < 24).sum().alias("paid_24m"),
        (pl.col("overdue_days") >= 30).sum().alias("months_30plus_all"),
        pl.col("overdue_days").max().alias("worst_all"),
        age.min().alias("latest_age"),
        pl.col("overdue_days").get(age.arg_min()).alias("latest_overdue_days"),
        pl.col("overdue_amount_cents").get(age.arg_min()).alias("latest_overdue_cents"),
        pl.col("balance_cents").get(age.arg_min()).alias("latest_balance_cents"),
        pl.col("status").get(age.arg_min()).alias("latest_status"),
        pl.col("balance_cents").filter(age == 6).first().alias("balance_6_ago_cents"),
        # The regular instalment of a loan (its rate is solved from it, below).
        pl.col("amount_due_cents")
        .filter(pl.col("amount_due_cents") > 0)
        .median()
        .alias("instalment"),
        # Cards: the share of the balance beyond the minimum repaid, in basis points (integer
        # division: exact), in months paid on time.
        ((paid - due) * 10_000 // (balance - due))
        .clip(0, 10_000)
        .filter(on_time & (due > 0) & (balance > due) & (age < 12))
        .median()
        .alias("card_share_bp"),
    ]
    counts: list[str] = []
    for days in (30, 60, 90):
        for months in (3, 6, 12, 24):
            name = f"rep_months_{days}plus_{months}m"
            per_account.append(
                ((pl.col("overdue_days") >= days) & (age < months)).sum().alias(name)
            )
            counts.append(name)
    accounts = (
        src.accounts.lazy()
        .select("account_no", KEY, "product", "credit_limit_cents", "opened_on", "maturity_on")
        .with_columns(pl.col("account_no").cast(pl.Int64))
    )
    collected = (
        rows.group_by("account_no").agg(per_account).join(accounts, on="account_no").collect()
    )
    by_account = collected.with_columns(_rate_spread(collected)).lazy()

    revolving = pl.col("product").is_in(REVOLVING_PRODUCTS)
    current = (pl.col("latest_age") <= 2) & (pl.col("latest_status") != "closed")
    now_limit = pl.col("credit_limit_cents").filter(revolving & current).sum()
    then = revolving & pl.col("balance_6_ago_cents").is_not_null()
    then_limit = pl.col("credit_limit_cents").filter(then).sum()
    util_now = pl.when(now_limit > 0).then(
        pl.col("latest_balance_cents").filter(revolving & current).sum() / now_limit
    )
    util_then = pl.when(then_limit > 0).then(
        pl.col("balance_6_ago_cents").filter(then).sum() / then_limit
    )
    due = pl.col("due_6m").sum()
    due_24m = pl.col("due_24m").sum()
    limit_months = (pl.col("credit_limit_cents") * pl.col("months_12m")).filter(revolving).sum()
    spread = pl.col("rate_spread_micro")
    # Medians of integers are exact halves at worst: their sums do not depend on the order.
    card_share = pl.col("card_share_bp").filter(pl.col("product") == CARD)
    history = by_account.group_by(KEY).agg(
        pl.col("worst_12m").max().cast(pl.Float64).alias("rep_worst_overdue_days_12m"),
        pl.col("worst_24m").max().cast(pl.Float64).alias("rep_worst_overdue_days_24m"),
        *[pl.col(name).sum() for name in counts],
        pl.col("since").min().cast(pl.Float64).alias("rep_months_since_delinquency"),
        pl.when(due > 0).then(pl.col("paid_6m").sum() / due).alias("rep_payment_ratio_6m"),
        pl.col("months").sum().alias("rep_months_reported"),
        (pl.col("late_months").sum() / pl.col("months").sum()).alias("rep_late_months_share"),
        pl.when(limit_months > 0)
        .then(pl.col("balance_sum_12m").filter(revolving).sum() / limit_months)
        .alias("rep_utilisation_avg_12m"),
        pl.when(due_24m > 0)
        .then(pl.col("paid_24m").sum() / due_24m)
        .alias("rep_payment_ratio_24m"),
        pl.col("months_30plus_all").sum().alias("rep_months_30plus_all"),
        pl.col("worst_all").max().cast(pl.Float64).alias("rep_worst_overdue_days_all"),
        (pl.col("late_months") > 0).sum().alias("rep_accounts_ever_late"),
        pl.col("latest_overdue_days")
        .filter(current)
        .max()
        .cast(pl.Float64)
        .alias("rep_current_overdue_days"),
        (pl.col("latest_overdue_cents").filter(current).sum()).alias("rep_current_overdue_amount"),
        (pl.col("latest_balance_cents").filter(current).sum()).alias("rep_total_balance"),
        util_now.alias("rep_utilisation"),
        (util_now - util_then).alias("rep_utilisation_trend_6m"),
        (pl.col("latest_status") == "written_off").sum().alias("rep_written_off_accounts"),
        pl.when(spread.count() > 0)
        .then(spread.sum() / spread.count())
        .alias("rep_rate_spread_avg"),
        spread.max().alias("rep_rate_spread_max"),
        pl.when(card_share.count() > 0)
        .then(card_share.sum() / card_share.count())
        .alias("rep_card_repayment_share_12m"),
    )

    accounts = src.accounts.lazy()
    is_open = pl.col("closed_on").is_null() | (pl.col("closed_on") > as_of)
    open_count = is_open.sum()
    account_agg = accounts.group_by(KEY).agg(
        open_count.alias("rep_open_accounts"),
        (pl.col("credit_limit_cents").filter(is_open).sum()).alias("rep_total_limit"),
        _days_between(pl.col("opened_on"), as_of).max().alias("rep_oldest_account_months"),
        _days_between(pl.col("opened_on"), as_of).min().alias("rep_newest_account_months"),
        (_days_between(pl.col("opened_on"), as_of) < 6 * DAYS_PER_MONTH)
        .sum()
        .alias("rep_accounts_opened_6m"),
        pl.when(open_count > 0)
        .then((is_open & pl.col("product").is_in(REVOLVING_PRODUCTS)).sum() / open_count)
        .alias("rep_revolving_share"),
        pl.when(open_count > 0)
        .then((is_open & pl.col("guarantee_type").is_in(SECURED)).sum() / open_count)
        .alias("rep_secured_share"),
    )
    result = account_agg.join(history, on=KEY, how="left").with_columns(
        # An account holder with nothing reported recently is not overdue now.
        pl.col("rep_current_overdue_days").fill_null(0.0),
        pl.col("rep_current_overdue_amount").fill_null(0.0),
        pl.col("rep_total_balance").fill_null(0.0),
        pl.col("rep_months_reported").fill_null(0),
        pl.col("rep_written_off_accounts").fill_null(0),
    )
    return result.collect()


def _power(base: F64, exponent: npt.NDArray[np.int64]) -> F64:
    """base ** exponent by repeated squaring: multiplications only, each correctly rounded,
    so an element's result does not depend on the array it is computed in."""
    result = np.ones_like(base)
    power = base.copy()
    left = exponent.copy()
    while (left > 0).any():
        odd = (left & 1) == 1
        result = np.where(odd, result * power, result)
        power = power * power
        left = left >> 1
    return result


def implied_annual_rate(principal: F64, instalment: F64, months: npt.NDArray[np.int64]) -> F64:
    """The nominal annual rate (12 x monthly) at which ``months`` equal monthly
    ``instalment``s repay ``principal`` (annuity), by bisection on [0, 100%] a month; 0 when
    the instalments do not exceed the principal."""
    low = np.zeros_like(principal)
    high = np.ones_like(principal)
    for _ in range(48):
        mid = (low + high) * 0.5
        growth = _power(1.0 + mid, months)
        payment = principal * mid * growth / (growth - 1.0)
        above = payment > instalment
        high = np.where(above, mid, high)
        low = np.where(above, low, mid)
    rate: F64 = np.where(instalment * months <= principal, 0.0, (low + high) * 0.5 * 12.0)
    return rate


def _rate_spread(by_account: pl.DataFrame) -> pl.Series:
    """Per account: implied annual rate minus the product's reference rate, in millionths
    (integers, so that sums are exact); null for accounts without a term, a principal or a
    reported instalment, and for products without a reference rate."""
    months = (month_index(pl.col("maturity_on")) - month_index(pl.col("opened_on"))).cast(pl.Int64)
    loans = by_account.select(
        pl.col("credit_limit_cents").cast(pl.Float64).alias("principal"),
        pl.col("instalment").cast(pl.Float64),
        months.alias("months"),
        pl.col("product")
        .replace_strict(REFERENCE_RATES_BP, default=None, return_dtype=pl.Int64)
        .alias("reference_bp"),
    )
    usable = (
        loans.select(
            (pl.col("principal") > 0)
            & (pl.col("instalment") > 0)
            & (pl.col("months") >= 1)
            & pl.col("reference_bp").is_not_null()
        )
        .to_series()
        .fill_null(False)
        .to_numpy()
    )
    principal = loans["principal"].fill_null(1.0).to_numpy()
    instalment = loans["instalment"].fill_null(1.0).to_numpy()
    term = loans["months"].fill_null(1).clip(1, 1200).to_numpy().astype(np.int64)
    # Solved only where it is used (each element's result is its own: see _power).
    rate = np.zeros_like(principal)
    rows = np.flatnonzero(usable)
    rate[rows] = implied_annual_rate(principal[rows], instalment[rows], term[rows])
    reference = loans["reference_bp"].fill_null(0).to_numpy() * 100
    micro = pl.Series(np.rint(rate * 1e6).astype(np.int64) - reference)
    return pl.select(pl.when(pl.Series(usable)).then(micro).alias("rate_spread_micro")).to_series()


def public_record_features(src: Sources, point: PointInTime) -> pl.DataFrame:
    as_of = pl.lit(point.as_of)
    records = src.public_records.lazy().with_columns(
        (pl.col("status") == "active").alias("_in_force")
    )
    # Retention: a record that ended before the retention period no longer counts.
    records = records.filter(
        pl.col("_in_force") | (pl.col("cleared_on") >= pl.lit(point.retention_start))
    )
    exprs: list[pl.Expr] = []
    for kind in PUBLIC_RECORD_KINDS:
        of_kind = pl.col("kind") == kind
        exprs += [
            (of_kind & pl.col("_in_force")).sum().alias(f"pub_{kind}_active"),
            (pl.col("amount_cents").filter(of_kind & pl.col("_in_force")).sum()).alias(
                f"pub_{kind}_amount"
            ),
            _days_between(pl.col("event_date").filter(of_kind).max(), as_of).alias(
                f"pub_{kind}_months_since"
            ),
        ]
    exprs.append(pl.col("kind").is_in(NEGATIVE_PUBLIC_KINDS).sum().alias("pub_negative_retained"))
    exprs.append(pl.len().alias("pub_records_retained"))
    return records.group_by(KEY).agg(exprs).collect()


def inquiry_features(src: Sources, point: PointInTime) -> pl.DataFrame:
    cutoff = pl.lit(point.reported_before)
    exprs: list[pl.Expr] = []
    for days in INQUIRY_DAYS:
        recent = pl.col("inquired_at") >= cutoff - pl.duration(days=days)
        exprs += [
            recent.sum().alias(f"inq_count_{days}d"),
            pl.col("source").filter(recent).n_unique().alias(f"inq_platforms_{days}d"),
        ]
    return src.inquiries.lazy().group_by(KEY).agg(exprs).collect()


def entity_attributes(src: Sources, point: PointInTime, home_province: str) -> pl.DataFrame:
    as_of = pl.lit(point.as_of)
    industry_code = {letter: index for index, letter in enumerate(INDUSTRIES)}
    return src.entities.select(
        KEY,
        _days_between(pl.col("established_on"), as_of).alias("ent_age_months"),
        pl.col("registered_capital").log1p().alias("ent_log_registered_capital"),
        pl.col("industry")
        .replace_strict(industry_code, return_dtype=pl.Int64)
        .alias("ent_industry"),
        pl.col("status").is_in(ABNORMAL_STATUSES).cast(pl.Int64).alias("ent_status_abnormal"),
        (pl.col("region_code").str.slice(0, 2) == home_province)
        .cast(pl.Int64)
        .alias("subject_home_province"),
    )


def person_attributes(src: Sources, point: PointInTime, home_province: str) -> pl.DataFrame:
    return src.persons.select(
        KEY,
        _completed_years(pl.col("birth_date"), point).alias("per_age_years"),
        pl.col("education")
        .replace_strict(EDUCATION_ORDER, default=None, return_dtype=pl.Int64)
        .alias("per_education_level"),
        (pl.col("id_region").str.slice(0, 2) == home_province)
        .cast(pl.Int64)
        .alias("subject_home_province"),
    )


def _completed_years(birth: pl.Expr, point: PointInTime) -> pl.Expr:
    """Age in completed years on the as-of date (integer arithmetic, no rounding)."""
    before_birthday = (birth.dt.month() > point.as_of.month) | (
        (birth.dt.month() == point.as_of.month) & (birth.dt.day() > point.as_of.day)
    )
    return (point.as_of.year - birth.dt.year() - before_birthday.cast(pl.Int32)).cast(pl.Float64)


# Features the pipeline produces as exact integers (days, cents, basis points) and divides
# once, in numpy, when the row is finished: IEEE division, the same bits on every path.
SCALED_FEATURES: dict[str, float] = {
    "ent_age_months": DAYS_PER_MONTH,
    "rep_oldest_account_months": DAYS_PER_MONTH,
    "rep_newest_account_months": DAYS_PER_MONTH,
    "rep_current_overdue_amount": 100.0,
    "rep_total_balance": 100.0,
    "rep_total_limit": 100.0,
    "rep_rate_spread_avg": 10_000.0,  # millionths -> percentage points
    "rep_rate_spread_max": 10_000.0,
    "rep_card_repayment_share_12m": 10_000.0,  # basis points -> share
    "rp_shareholder_overdue_days": 10_000.0,
    "rp_shareholder_dishonest": 10_000.0,
    "rp_shareholder_enforcement": 10_000.0,
    **{f"pub_{kind}_amount": 100.0 for kind in PUBLIC_RECORD_KINDS},
    **{f"pub_{kind}_months_since": DAYS_PER_MONTH for kind in PUBLIC_RECORD_KINDS},
}
assert math.isclose(DAYS_PER_MONTH * 12, 365.25)


def apply_scales(frame: pl.DataFrame) -> pl.DataFrame:
    """Divide the integer-valued SCALED_FEATURES present in ``frame`` into their units."""
    return frame.with_columns(
        pl.Series(name, frame[name].cast(pl.Float64).to_numpy() / divisor, nan_to_null=True)
        for name, divisor in SCALED_FEATURES.items()
        if name in frame.columns
    )
