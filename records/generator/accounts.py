"""Lenders and credit accounts (loans, cards, leases) of entities and persons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from records.generator.params import (
    DAY_US,
    F64,
    I64,
    Bool,
    Calendar,
    add_months,
    choose_rows,
    month_of,
    month_start,
    time_of_day,
    uniform_days,
)
from records.generator.subjects import INDIVIDUAL, SOLE, Entities, Persons
from records.tables import PRODUCTS

__all__ = ["LENDERS", "Accounts", "make_accounts"]

N_LENDERS: Final = 60
LENDERS: Final = tuple(f"P{i:04d}" for i in range(1, N_LENDERS + 1))
# Lender groups (0-based index ranges): banks, consumer finance, online microlenders, lessors.
_BANKS: Final = range(0, 20)
_CONSUMER: Final = range(20, 35)
_MICRO: Final = range(35, 52)
_LEASING: Final = range(52, 60)

P: Final = {name: i for i, name in enumerate(PRODUCTS)}
CARD: Final = P["credit_card"]

_TENORS: Final[dict[str, tuple[int, ...]]] = {
    "working_capital_loan": (6, 12, 12),
    "term_loan": (24, 36, 60),
    "credit_card": (0,),
    "consumer_loan": (12, 24, 36),
    "mortgage": (120, 180, 240, 300, 360),
    "auto_loan": (24, 36, 60),
    "microloan": (3, 6, 12),
    "supply_chain_finance": (3, 6),
    "financial_leasing": (24, 36, 60),
}
# Median limit or principal (CNY), log-sd, bounds, rounding step.
_LIMITS: Final[dict[str, tuple[float, float, float, float, float]]] = {
    "working_capital_loan": (1_000_000, 1.0, 50_000, 50_000_000, 10_000),
    "term_loan": (3_000_000, 1.0, 100_000, 100_000_000, 10_000),
    "credit_card": (30_000, 0.7, 2_000, 300_000, 1_000),
    "consumer_loan": (50_000, 0.8, 5_000, 500_000, 100),
    "mortgage": (1_200_000, 0.6, 200_000, 8_000_000, 1_000),
    "auto_loan": (150_000, 0.5, 30_000, 800_000, 100),
    "microloan": (15_000, 0.8, 1_000, 200_000, 100),
    "supply_chain_finance": (500_000, 0.9, 20_000, 10_000_000, 1_000),
    "financial_leasing": (1_500_000, 0.9, 50_000, 30_000_000, 1_000),
}
_ANNUAL_RATE: Final = {
    "working_capital_loan": 0.045,
    "term_loan": 0.05,
    "credit_card": 0.18,
    "consumer_loan": 0.09,
    "mortgage": 0.04,
    "auto_loan": 0.06,
    "microloan": 0.16,
    "supply_chain_finance": 0.055,
    "financial_leasing": 0.075,
}
# guarantee_type probabilities (unsecured, guaranteed, collateral, pledge) per product.
_GUARANTEE: Final[dict[str, tuple[float, float, float, float]]] = {
    "working_capital_loan": (0.25, 0.40, 0.25, 0.10),
    "term_loan": (0.10, 0.30, 0.50, 0.10),
    "credit_card": (0.97, 0.03, 0.0, 0.0),
    "consumer_loan": (0.85, 0.10, 0.03, 0.02),
    "mortgage": (0.0, 0.02, 0.98, 0.0),
    "auto_loan": (0.05, 0.05, 0.85, 0.05),
    "microloan": (0.90, 0.08, 0.0, 0.02),
    "supply_chain_finance": (0.15, 0.15, 0.10, 0.60),
    "financial_leasing": (0.05, 0.15, 0.75, 0.05),
}
# Product mixes (weights in PRODUCTS order) and how they tilt with latent risk.
_PERSON_MIX: Final = np.array([0, 0, 0.34, 0.18, 0.12, 0.08, 0.28, 0, 0])
_PERSON_TILT: Final = np.array([0, 0, 0.0, 0.2, -0.35, -0.1, 0.6, 0, 0])
_SHOP_MIX: Final = np.array([0.35, 0.05, 0, 0, 0, 0, 0.55, 0.03, 0.02])
_COMPANY_MIX: Final = np.array([0.33, 0.17, 0, 0, 0, 0, 0.28, 0.14, 0.08])
_ENTITY_TILT: Final = np.array([0.0, -0.2, 0, 0, 0, 0, 0.5, 0.0, 0.0])


def _lender_matrix() -> F64:
    """P(lender | product): a few big lenders in each group, many small ones."""
    rows = []
    for product in PRODUCTS:
        groups: list[tuple[range, float]]
        if product in ("mortgage", "term_loan", "working_capital_loan", "supply_chain_finance"):
            groups = [(_BANKS, 1.0)]
        elif product == "credit_card":
            groups = [(_BANKS, 0.9), (_CONSUMER, 0.1)]
        elif product == "auto_loan":
            groups = [(_BANKS, 0.6), (_CONSUMER, 0.4)]
        elif product == "consumer_loan":
            groups = [(_BANKS, 0.45), (_CONSUMER, 0.55)]
        elif product == "microloan":
            groups = [(_MICRO, 0.75), (_BANKS, 0.15), (_CONSUMER, 0.10)]
        else:  # financial_leasing
            groups = [(_LEASING, 0.85), (_BANKS, 0.15)]
        row = np.zeros(N_LENDERS)
        for members, share in groups:
            rank = np.arange(1, len(members) + 1, dtype=np.float64)
            zipf = rank**-1.1
            row[members.start : members.stop] += share * zipf / zipf.sum()
        rows.append(row)
    return np.array(rows)


LENDER_MATRIX: Final = _lender_matrix()


@dataclass(frozen=True)
class Accounts:
    n: int
    subject: I64  # global subject index: entity i -> i, person j -> n_entities + j
    product: I64
    lender: I64
    opened: I64
    open_month: I64
    maturity: I64  # -1 = none (revolving)
    tenor: I64  # months; 0 = revolving
    limit: F64
    rate: F64  # monthly
    installment: F64  # 0 for cards
    guarantee: I64
    due_day: I64  # day of month an installment is due (1..25)
    score: F64  # latent risk of the account (subject risk + noise)
    distress: I64  # window month offset from which the subject is in distress (NONE = never)
    reported_us: I64  # when the lender reported the account (opening); closure may move it
    account_id: pl.Series


def make_accounts(
    rng: np.random.Generator,
    entities: Entities,
    persons: Persons,
    entity_risk: F64,
    distress: I64,
    has_guarantor: Bool,
    cal: Calendar,
) -> Accounts:
    n_e = entities.n
    # Entities.
    shop = (entities.entity_type == INDIVIDUAL) | (entities.entity_type == SOLE)
    lam_e = np.where(shop, 1.1, 2.0) * (entities.capital / 1e6) ** 0.08 * np.exp(0.1 * entity_risk)
    count_e = np.minimum(rng.poisson(lam_e), 6)
    # Persons.
    age = (cal.end_day - persons.birth_day) / 365.25
    lam_p = 1.6 * np.exp(0.12 * persons.risk) * np.where((age < 23) | (age > 65), 0.5, 1.0)
    count_p = np.minimum(rng.poisson(lam_p), 6)

    ent = np.repeat(np.arange(n_e, dtype=np.int64), count_e)
    per = np.repeat(np.arange(persons.n, dtype=np.int64), count_p)
    subject = np.concatenate([ent, per + n_e])
    is_person = subject >= n_e
    m = subject.shape[0]
    risk = np.concatenate([entity_risk, persons.risk])[subject]
    entity_mix = np.where(
        np.concatenate([shop[ent], np.zeros(per.shape[0], dtype=np.bool_)])[:, None],
        _SHOP_MIX,
        _COMPANY_MIX,
    ) * np.exp(np.outer(risk, _ENTITY_TILT))
    mix = np.where(
        is_person[:, None], _PERSON_MIX * np.exp(np.outer(risk, _PERSON_TILT)), entity_mix
    )
    product = choose_rows(rng, mix)

    tenor = np.zeros(m, dtype=np.int64)
    limit = np.zeros(m)
    rate = np.zeros(m)
    guarantee = np.zeros(m, dtype=np.int64)
    lender = np.zeros(m, dtype=np.int64)
    capital = np.concatenate([entities.capital[ent], np.full(per.shape[0], 1e6)])
    guaranteed_firm = np.concatenate([has_guarantor[ent], np.zeros(per.shape[0], np.bool_)])
    for name, code in P.items():
        rows = np.flatnonzero(product == code)
        k = rows.shape[0]
        if k == 0:
            continue
        options = np.array(_TENORS[name], dtype=np.int64)
        tenor[rows] = options[rng.integers(0, options.shape[0], k)]
        median, sigma, low, high, step = _LIMITS[name]
        scale = np.ones(k)
        if name in ("working_capital_loan", "term_loan", "supply_chain_finance"):
            scale = np.clip(capital[rows] / 1e6, 0.05, 50.0) ** 0.35
        elif name == "microloan":
            scale = np.where(is_person[rows], 1.0, 8.0)
        value = median * scale * np.exp(sigma * rng.standard_normal(k))
        limit[rows] = np.clip(np.round(value / step) * step, low, high)
        spread = 0.02 * np.maximum(risk[rows], 0.0) + 0.005 * rng.standard_normal(k)
        rate[rows] = np.maximum(_ANNUAL_RATE[name] + spread, 0.02) / 12.0
        probs = np.tile(np.array(_GUARANTEE[name]), (k, 1))
        if name in ("working_capital_loan", "term_loan"):
            probs[guaranteed_firm[rows], 1] += 1.0
        guarantee[rows] = choose_rows(rng, probs)
        cumulative = np.cumsum(LENDER_MATRIX[code])
        lender[rows] = np.minimum(
            np.searchsorted(cumulative / cumulative[-1], rng.random(k), side="right"),
            N_LENDERS - 1,
        )

    # Opening dates: the account must be running at some point of the window.
    subject_low = np.concatenate([entities.established[ent] + 30, persons.adult_day[per] + 365])
    subject_high = np.concatenate(
        [entities.life_end[ent] - 30, np.full(per.shape[0], cal.end_day, dtype=np.int64)]
    )
    lookback = np.where(
        tenor == 0, 8 * 365, np.minimum(np.round(tenor * 30.44).astype(np.int64) - 20, 10 * 365)
    )
    low = np.maximum(subject_low, cal.start_day - lookback)
    high = np.minimum(subject_high, cal.end_day - 12)
    keep = low <= high
    subject, product, tenor, limit, rate = (
        subject[keep],
        product[keep],
        tenor[keep],
        limit[keep],
        rate[keep],
    )
    guarantee, lender, risk, low, high = (
        guarantee[keep],
        lender[keep],
        risk[keep],
        low[keep],
        high[keep],
    )
    m = subject.shape[0]
    opened = uniform_days(rng, low, high)
    open_month = month_of(opened)
    maturity = np.where(tenor > 0, add_months(opened, tenor), -1)
    due_day = np.clip(opened - month_start(open_month) + 1, 1, 25)
    growth = (1.0 + rate) ** np.maximum(tenor, 1)
    installment = np.where(tenor > 0, limit * rate * growth / (growth - 1.0), 0.0)
    score = risk + 0.35 * rng.standard_normal(m)

    # Reported by the lender a few days after opening (old accounts in the initial load).
    backfill = cal.start_day + rng.integers(0, 28, m)
    day = np.maximum(opened + rng.integers(0, 5, m), backfill)
    reported = day * DAY_US + time_of_day(rng, m, 0, 12)

    number = 1_000_000_000 + rng.permutation(m).astype(np.int64) * 7 + rng.integers(0, 7, m)
    prefix = np.where(product == CARD, "C", np.where(subject < n_e, "B", "L"))
    account_id = pl.DataFrame({"p": prefix, "n": number}).select(
        pl.concat_str(pl.col("p"), pl.col("n").cast(pl.String)).alias("account_id")
    )["account_id"]
    # Lenders deliver accounts in the order they were opened.
    order = np.argsort(opened, kind="stable")
    return Accounts(
        n=m,
        subject=subject[order],
        product=product[order],
        lender=lender[order],
        opened=opened[order],
        open_month=open_month[order],
        maturity=maturity[order].astype(np.int64),
        tenor=tenor[order],
        limit=limit[order],
        rate=rate[order],
        installment=installment[order],
        guarantee=guarantee[order],
        due_day=due_day[order].astype(np.int64),
        score=score[order],
        distress=distress[subject[order]],
        reported_us=reported[order],
        account_id=account_id.gather(order),
    )
