"""Month-by-month repayment of every account, delinquency and the resulting default events.

Vectorised over accounts; the only Python loop is over the months of the window. Each
account has a number of missed installments ``k`` and the month of the oldest unpaid one;
overdue days follow from the due day. A month is a Markov step driven by the account's
latent risk and by its subject's distress: current accounts miss a payment, delinquent ones
cure, pay one installment (stay) or roll forward (30 -> 60 -> 90+ days). Crossing 90 days
past due is a default; accounts 180+ days past due get written off, a few are restructured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from records.generator.accounts import CARD, N_LENDERS, Accounts
from records.generator.params import (
    DAY_US,
    F64,
    I64,
    Calendar,
    month_end,
    month_start,
    sigmoid,
    time_of_day,
)
from records.tables import DEFAULT_KINDS, REPAYMENT_STATUSES

__all__ = ["Defaults", "Repayments", "simulate"]

NORMAL: Final = REPAYMENT_STATUSES.index("normal")
OVERDUE: Final = REPAYMENT_STATUSES.index("overdue")
CLOSED: Final = REPAYMENT_STATUSES.index("closed")
WRITTEN_OFF: Final = REPAYMENT_STATUSES.index("written_off")
OVERDUE_90: Final = DEFAULT_KINDS.index("overdue_90_days")
CHARGE_OFF: Final = DEFAULT_KINDS.index("charge_off")
BANKRUPTCY: Final = DEFAULT_KINDS.index("bankruptcy")
RESTRUCTURING: Final = DEFAULT_KINDS.index("debt_restructuring")

# Monthly miss probability (logit) per product for an average, undistressed account.
_MISS_BASE: Final = np.array(
    [
        -5.0,  # working_capital_loan
        -5.3,  # term_loan
        -4.6,  # credit_card
        -4.7,  # consumer_loan
        -6.2,  # mortgage
        -5.4,  # auto_loan
        -4.1,  # microloan
        -5.0,  # supply_chain_finance
        -5.2,  # financial_leasing
    ]
)
_CURE_BASE: Final = np.array([0.0, 2.2, 1.2, 0.4, -2.2])  # by missed installments 1, 2, 3, 4+
_PREPAY: Final = np.array([0.02, 0.01, 0.0, 0.015, 0.004, 0.008, 0.03, 0.02, 0.005])
_STAY: Final = 0.15
_WRITE_OFF: Final = 0.15
_RESTRUCTURE: Final = 0.05


@dataclass(frozen=True)
class Repayments:
    account: npt.NDArray[np.int32]  # account index
    month: npt.NDArray[np.int16]  # month offset in the window
    balance: F64
    amount_due: F64
    amount_paid: F64
    overdue_days: npt.NDArray[np.int32]
    overdue_amount: F64
    status: npt.NDArray[np.int8]
    reported_us: I64


@dataclass(frozen=True)
class Defaults:
    subject: I64  # global subject index
    lender: I64
    kind: I64
    day: I64
    amount: F64  # NaN = absent
    account: I64  # -1 = none
    reported_us: I64


@dataclass(frozen=True)
class Outcome:
    repayments: Repayments
    defaults: Defaults
    closed_day: I64  # per account, -1 = open (as far as reported by end_date)
    account_reported_us: I64  # per account, moved to the closing batch for closed accounts


def batch_times(rng: np.random.Generator, cal: Calendar) -> I64:
    """When each lender delivered each month's batch: 5-20 days after the month end."""
    ends = month_end(np.arange(cal.start_month, cal.start_month + cal.months))
    delay = rng.integers(5, 21, (N_LENDERS, cal.months))
    out: I64 = (ends[None, :] + delay) * DAY_US + time_of_day(
        rng, N_LENDERS * cal.months, 1, 11
    ).reshape(N_LENDERS, cal.months)
    return out


def simulate(rng: np.random.Generator, acc: Accounts, cal: Calendar, n_entities: int) -> Outcome:
    n = acc.n
    batches = batch_times(rng, cal)
    is_card = acc.product == CARD
    k = np.zeros(n, dtype=np.int64)  # missed installments
    oldest = np.zeros(n, dtype=np.int64)  # month index of the oldest unpaid installment
    paid_cum = np.clip(cal.start_month - 1 - acc.open_month, 0, acc.tenor)
    alive = np.ones(n, dtype=np.bool_)
    crossed = np.zeros(n, dtype=np.bool_)
    closed_month = np.full(n, -1, dtype=np.int64)
    closed_day = np.full(n, -1, dtype=np.int64)
    util = np.clip(rng.beta(2.0, 3.0, n) + 0.12 * acc.score, 0.01, 0.98)
    pay_share = rng.beta(2.0, 2.0 * np.exp(0.8 * acc.score))  # cards: share of balance repaid
    growth = 1.0 + acc.rate
    miss_base = _MISS_BASE[acc.product]
    prepay = _PREPAY[acc.product]

    rows: dict[str, list[np.ndarray]] = {
        key: [] for key in ("a", "m", "bal", "due", "paid", "od", "oamt", "st", "rep")
    }
    events: dict[str, list[np.ndarray]] = {key: [] for key in ("a", "kind", "day", "amt", "m")}

    for m in range(cal.months):
        pm = cal.start_month + m
        first_day = int(month_start(pm))
        last_day = int(month_end(pm))
        a = np.flatnonzero(alive & (acc.open_month <= pm))
        if a.shape[0] == 0:
            continue
        ka = k[a]
        card = is_card[a]
        tenor = acc.tenor[a]
        n_due = pm - acc.open_month[a]
        s = acc.score[a]
        distressed = (m >= acc.distress[a]).astype(np.float64)
        bal_card = util[a] * acc.limit[a]
        has_inst = (n_due >= 1) & np.where(card, bal_card > 1.0, n_due <= tenor)
        inst = has_inst.astype(np.int64)

        u = rng.random(a.shape[0])
        p_miss = sigmoid(miss_base[a] + 0.9 * s + 3.4 * distressed)
        p_cure = sigmoid(_CURE_BASE[np.minimum(ka, 4)] - 0.5 * s - 3.5 * distressed)
        current = ka == 0
        miss = current & has_inst & (u < p_miss)
        cure = ~current & (u < p_cure)
        stay = ~current & ~cure & (u < p_cure + (1.0 - p_cure) * _STAY)
        paid_n = np.where(current, inst - miss, np.where(cure, ka + inst, np.where(stay, 1, 0)))
        paid_n = np.minimum(paid_n, ka + inst)
        k_new = ka + inst - paid_n
        om = np.where(current, pm, oldest[a] + paid_n)
        due_of_oldest = month_start(om) + acc.due_day[a] - 1
        od = np.where(k_new > 0, last_day - due_of_oldest, 0)

        u2 = rng.random(a.shape[0])
        write_off = (od >= 180) & (u2 < _WRITE_OFF)
        restructure = (od >= 90) & crossed[a] & ~write_off & (u2 > 1.0 - _RESTRUCTURE)
        k_new = np.where(restructure, 0, k_new)
        od = np.where(restructure, 0, od)
        cross = (od >= 90) & ~crossed[a]
        crossed[a[cross]] = True

        # Balances and payments.
        new_paid_cum = np.minimum(paid_cum[a] + paid_n * (~card), tenor)
        g = growth[a]
        principal = acc.limit[a]
        r = acc.rate[a]
        gp = g**new_paid_cum
        loan_bal = np.maximum(principal * gp - acc.installment[a] * (gp - 1.0) / r, 0.0)
        loan_bal = np.where(n_due <= 0, principal, loan_bal)
        target = np.clip(sigmoid(-0.5 + 0.8 * s) + 0.4 * distressed + 0.08 * k_new, 0.02, 1.1)
        step = util[a] + 0.25 * (target - util[a]) + 0.05 * rng.standard_normal(a.shape[0])
        new_util = np.clip(step, 0.0, np.where(k_new > 0, 1.15, 1.0))
        card_bal = new_util * acc.limit[a]
        card_due = np.where(n_due >= 1, 0.1 * card_bal, 0.0)
        card_paid = np.where(
            miss | (~current & ~cure & ~stay) | (n_due < 1),
            0.0,
            np.where(
                current,
                card_due + pay_share[a] * (card_bal - card_due),
                card_due * np.where(cure, ka + 1, 1),
            ),
        )
        inst_amt = acc.installment[a]
        balance = np.where(card, card_bal, loan_bal)
        due = np.where(card, card_due, np.where(has_inst, inst_amt, 0.0))
        paid = np.where(card, card_paid, paid_n * inst_amt)
        oamt = np.where(card, np.minimum(k_new * card_due, card_bal), k_new * inst_amt)
        balance = np.maximum(balance, oamt)

        u3 = rng.random(a.shape[0])
        matured = ~card & (n_due >= tenor) & (k_new == 0)
        early = (k_new == 0) & (n_due >= 1) & ~matured & (u3 < np.where(card, 0.004, prepay[a]))
        closing = matured | early
        paid = np.where(early, paid + balance, paid)
        balance = np.where(closing, 0.0, balance)
        oamt = np.where(closing, 0.0, oamt)
        status = np.where(
            write_off,
            WRITTEN_OFF,
            np.where(closing, CLOSED, np.where(k_new > 0, OVERDUE, NORMAL)),
        )

        batch = batches[acc.lender[a], m]
        sent = np.flatnonzero(batch <= cal.end_us)  # batches after end_date are not reported
        rows["a"].append(a[sent].astype(np.int32))
        rows["m"].append(np.full(sent.shape[0], m, dtype=np.int16))
        rows["bal"].append(balance[sent])
        rows["due"].append(due[sent])
        rows["paid"].append(paid[sent])
        rows["od"].append(od[sent].astype(np.int32))
        rows["oamt"].append(oamt[sent])
        rows["st"].append(status[sent].astype(np.int8))
        rows["rep"].append(batch[sent])

        due_this_month = first_day + acc.due_day[a] - 1
        for mask, kind, day in (
            (cross, OVERDUE_90, due_of_oldest + 90),
            (write_off, CHARGE_OFF, np.full(a.shape[0], last_day)),
            (restructure, RESTRUCTURING, due_this_month),
        ):
            hit = np.flatnonzero(mask)
            events["a"].append(a[hit])
            events["kind"].append(np.full(hit.shape[0], kind, dtype=np.int64))
            events["day"].append(day[hit])
            events["amt"].append(balance[hit])
            events["m"].append(np.full(hit.shape[0], m, dtype=np.int64))

        # State.
        k[a] = k_new
        oldest[a] = om
        paid_cum[a] = new_paid_cum
        util[a] = new_util
        ended = closing | write_off
        gone = a[ended]
        alive[gone] = False
        closed_month[gone] = m
        closed_day[gone] = np.where(write_off, last_day, due_this_month)[ended]

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        if not parts:
            return np.zeros(0, dtype=dtype)
        out = np.concatenate(parts)
        parts.clear()  # free the monthly pieces as we go
        return out

    repayments = Repayments(
        account=cat(rows["a"], np.int32),
        month=cat(rows["m"], np.int16),
        balance=cat(rows["bal"], np.float64),
        amount_due=cat(rows["due"], np.float64),
        amount_paid=cat(rows["paid"], np.float64),
        overdue_days=cat(rows["od"], np.int32),
        overdue_amount=cat(rows["oamt"], np.float64),
        status=cat(rows["st"], np.int8),
        reported_us=cat(rows["rep"], np.int64),
    )

    # Closures count only once the lender has reported them.
    was_closed = closed_month >= 0
    close_batch = np.where(
        was_closed, batches[acc.lender, np.maximum(closed_month, 0)], np.iinfo(np.int64).max
    )
    reported_close = was_closed & (close_batch <= cal.end_us)
    closed_day = np.where(reported_close, closed_day, -1)
    account_reported = np.where(reported_close, close_batch, acc.reported_us)

    e_a = cat(events["a"], np.int64)
    e_m = cat(events["m"], np.int64)
    e_reported = batches[acc.lender[e_a], e_m] if e_a.shape[0] else np.zeros(0, np.int64)
    defaults = _defaults(
        rng,
        acc,
        e_a,
        cat(events["kind"], np.int64),
        cat(events["day"], np.int64),
        cat(events["amt"], np.float64),
        e_reported,
        n_entities,
        cal,
    )
    return Outcome(repayments, defaults, closed_day, account_reported)


def _defaults(
    rng: np.random.Generator,
    acc: Accounts,
    account: I64,
    kind: I64,
    day: I64,
    amount: F64,
    reported: I64,
    n_entities: int,
    cal: Calendar,
) -> Defaults:
    keep = reported <= cal.end_us
    account, kind, day, amount, reported = (
        account[keep],
        kind[keep],
        day[keep],
        amount[keep],
        reported[keep],
    )
    subject = acc.subject[account]
    lender = acc.lender[account]
    # One overdue_90_days event per subject and lender (the first); others unique per key.
    order = np.lexsort((account, day, kind, lender, subject))
    subject, lender, kind, day = subject[order], lender[order], kind[order], day[order]
    account, amount, reported = account[order], amount[order], reported[order]
    first = np.ones(subject.shape[0], dtype=np.bool_)
    same_group = (
        (subject[1:] == subject[:-1]) & (lender[1:] == lender[:-1]) & (kind[1:] == kind[:-1])
    )
    same_key = same_group & (day[1:] == day[:-1])
    first[1:] = ~np.where(kind[1:] == OVERDUE_90, same_group, same_key)
    subject, lender, kind, day = subject[first], lender[first], kind[first], day[first]
    account, amount, reported = account[first], amount[first], reported[first]

    # Some defaulted entities go bankrupt a few months later (reported by the same lender).
    entity_default = (kind == OVERDUE_90) & (subject < n_entities)
    idx = np.flatnonzero(entity_default)
    _, first_of_subject = np.unique(subject[idx], return_index=True)
    idx = idx[first_of_subject]
    chosen = idx[rng.random(idx.shape[0]) < 0.2]
    b_day = day[chosen] + rng.integers(60, 300, chosen.shape[0])
    b_rep = (b_day + rng.integers(1, 11, chosen.shape[0])) * DAY_US + time_of_day(
        rng, chosen.shape[0], 1, 11
    )
    fits = b_rep <= cal.end_us
    chosen, b_day, b_rep = chosen[fits], b_day[fits], b_rep[fits]
    m = chosen.shape[0]
    return Defaults(
        subject=np.concatenate([subject, subject[chosen]]),
        lender=np.concatenate([lender, lender[chosen]]),
        kind=np.concatenate([kind, np.full(m, BANKRUPTCY, dtype=np.int64)]),
        day=np.concatenate([day, b_day]),
        amount=np.concatenate([amount, np.full(m, np.nan)]),
        account=np.concatenate([account, np.full(m, -1, dtype=np.int64)]),
        reported_us=np.concatenate([reported, b_rep]),
    )
