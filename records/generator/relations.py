"""Who runs and owns the entities: legal representatives, shareholders, executives, guarantors.

A tenth of the persons control several companies (heavy-tailed); the rest of the legal
representatives run one business each. An entity's latent risk mixes its own risk with its
legal representative's and major shareholders' risk, so distress of related parties
predicts the entity's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from records.generator.params import (
    DAY_US,
    F64,
    I64,
    Bool,
    Calendar,
    choose,
    time_of_day,
    uniform_days,
)
from records.generator.subjects import INDIVIDUAL, PARTNERSHIP, SOLE, Entities, Persons
from records.tables import RELATION_ROLES

__all__ = ["Ownership", "Relations", "assign_ownership", "entity_risk", "make_relations"]

LEGAL_REP: Final = RELATION_ROLES.index("legal_representative")
SHAREHOLDER: Final = RELATION_ROLES.index("shareholder")
EXECUTIVE: Final = RELATION_ROLES.index("executive")
GUARANTOR: Final = RELATION_ROLES.index("guarantor")
UNITS: Final = 10_000  # share units: 1/10000


@dataclass(frozen=True)
class Ownership:
    """Current legal representative and founding shareholders, before dates are finalised."""

    rep: I64  # person index per entity
    established: I64  # founding day per entity (not before the representative came of age)
    sh_entity: I64  # one row per shareholder
    sh_person: I64
    sh_units: I64  # share in 1/10000, summing to 10000 per entity


@dataclass(frozen=True)
class Relations:
    entity: I64
    person: I64
    role: I64
    units: I64  # 0 = no share (not a shareholder)
    valid_from: I64
    valid_to: I64  # -1 = open
    source: I64  # -1 = registry (AMR), otherwise a lender index (guarantees)
    reported_us: I64


def _business_weight(persons: Persons, cal: Calendar) -> F64:
    """Who is likely to run a business: adults past their early twenties, more so mid-career.

    Nobody younger than 18.5 at the end date (they could not have founded anything yet).
    """
    age = (cal.end_day - persons.birth_day) / 365.25
    weight: F64 = np.where(age < 18.5, 0.0, np.where(age < 22, 0.05, np.where(age > 65, 0.4, 1.0)))
    if weight.shape[0] and weight.sum() == 0:
        weight = np.ones(weight.shape[0])
    return weight


def assign_ownership(
    rng: np.random.Generator, entities: Entities, persons: Persons, cal: Calendar
) -> Ownership:
    n_e, n_p = entities.n, persons.n
    if n_e == 0 or n_p == 0:
        if n_e:
            raise ValueError("entities need persons to run them")
        empty = np.zeros(0, dtype=np.int64)
        return Ownership(empty, entities.established, empty, empty, empty)
    weight = _business_weight(persons, cal)
    # Serial controllers: ~10% of persons, heavy-tailed number of companies each.
    cap = int(0.75 * n_e)
    counts_guess = 3.3  # mean companies per serial controller
    n_multi = min(round(0.10 * n_p), max(1, int(cap / counts_guess)), n_p)
    multi = rng.choice(n_p, n_multi, replace=False, p=weight / weight.sum())
    counts = np.minimum(2 + np.floor(rng.pareto(1.7, n_multi) * 1.4).astype(np.int64), 60)
    slots = rng.permutation(np.repeat(multi, counts))[:cap]
    others = np.ones(n_p, dtype=np.bool_)
    others[multi] = False
    pool = np.flatnonzero(others)
    rest = n_e - slots.shape[0]
    if pool.shape[0] >= rest:
        pw = weight[pool]
        singles = rng.choice(pool, rest, replace=False, p=pw / pw.sum())
    else:
        singles = rng.choice(n_p, rest, replace=True, p=weight / weight.sum())
    rep = rng.permutation(np.concatenate([slots, singles]).astype(np.int64))
    # A business is founded by an adult: move the founding date if needed.
    latest = cal.end_day - 60
    adult = persons.adult_day[rep]
    earliest = adult + np.minimum(rng.integers(0, 730, n_e), np.maximum(latest - adult, 0))
    established = np.minimum(np.maximum(entities.established, earliest), latest)

    # Founding shareholders.
    shop = (entities.entity_type == INDIVIDUAL) | (entities.entity_type == SOLE)
    n_sh = 1 + choose(rng, [0.30, 0.33, 0.20, 0.10, 0.07], n_e)
    n_sh = np.where(shop, 1, n_sh)
    n_sh = np.where(entities.entity_type == PARTNERSHIP, np.maximum(n_sh, 2), n_sh)
    rep_holds = shop | (rng.random(n_e) < 0.8)
    sh_entity = np.repeat(np.arange(n_e, dtype=np.int64), n_sh)
    first_of = np.concatenate([[0], np.cumsum(n_sh)[:-1]])
    position = np.arange(sh_entity.shape[0]) - first_of[sh_entity]
    is_rep = (position == 0) & rep_holds[sh_entity]
    investor_weight = weight.copy()
    investor_weight[multi] *= 4.0
    sh_person = rng.choice(n_p, sh_entity.shape[0], p=investor_weight / investor_weight.sum())
    sh_person = np.where(is_rep, rep[sh_entity], sh_person).astype(np.int64)
    # Distinct within the entity, and adults when the entity was founded.
    keep = _distinct_within(
        rng, sh_entity, sh_person, ~is_rep, investor_weight, persons.adult_day, established
    )
    sh_entity, sh_person, is_rep = sh_entity[keep], sh_person[keep], is_rep[keep]
    orphans = np.flatnonzero(np.bincount(sh_entity, minlength=n_e) == 0)
    if orphans.shape[0]:  # the legal representative then holds everything
        sh_entity = np.concatenate([sh_entity, orphans])
        sh_person = np.concatenate([sh_person, rep[orphans]])
        is_rep = np.concatenate([is_rep, np.ones(orphans.shape[0], dtype=np.bool_)])
    raw = rng.gamma(1.0, 1.0, sh_entity.shape[0]) * np.where(is_rep, 2.5, 1.0) + 0.02
    units = _split_units(sh_entity, raw, n_e)
    return Ownership(rep, established, sh_entity, sh_person, units)


def _distinct_within(
    rng: np.random.Generator,
    group: I64,
    member: I64,
    redrawable: Bool,
    weight: F64,
    adult_day: I64,
    adult_by: I64,
) -> Bool:
    """Redraw members repeated within a group or not adult by ``adult_by[group]``.

    Returns the rows to keep: unique within their group and adult in time.
    """
    p = weight / weight.sum()
    for _ in range(30):
        bad = (_duplicated(group, member) | (adult_day[member] > adult_by[group])) & redrawable
        if not bad.any():
            break
        member[bad] = rng.choice(p.shape[0], int(bad.sum()), p=p)
    keep: Bool = ~_duplicated(group, member) & (adult_day[member] <= adult_by[group])
    return keep


def _duplicated(group: I64, member: I64) -> Bool:
    """True for every row whose (group, member) pair occurred on an earlier row."""
    n = group.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return out
    order = np.lexsort((np.arange(n), member, group))
    g, m = group[order], member[order]
    same = (g[1:] == g[:-1]) & (m[1:] == m[:-1])
    out[order[1:][same]] = True
    return out


def _split_units(group: I64, raw: F64, n_groups: int) -> I64:
    """Shares in 1/10000 per group, each >= 1 unit, summing to exactly 10000 (fix on largest)."""
    total = np.bincount(group, weights=raw, minlength=n_groups)
    units = np.maximum(np.floor(raw / total[group] * UNITS).astype(np.int64), 1)
    gap = UNITS - np.bincount(group, weights=units, minlength=n_groups).astype(np.int64)
    order = np.lexsort((-units, group))
    first = np.ones(order.shape[0], dtype=np.bool_)
    first[1:] = group[order][1:] != group[order][:-1]
    largest = order[first]
    units[largest] += gap[group[largest]]
    return units


def entity_risk(own: F64, persons: Persons, ownership: Ownership) -> F64:
    """Latent entity risk: own part plus legal representative's and shareholders' risk."""
    n_e = own.shape[0]
    if n_e == 0:
        return own.copy()
    rep_risk = persons.risk[ownership.rep]
    weights = ownership.sh_units / UNITS
    holder_risk = np.bincount(
        ownership.sh_entity, weights=weights * persons.risk[ownership.sh_person], minlength=n_e
    )
    mixed = 0.70 * own + 0.50 * rep_risk + 0.35 * holder_risk
    scale = float(mixed.std()) if n_e > 1 else 1.0
    out: F64 = (mixed - mixed.mean()) / (scale if scale > 0 else 1.0)
    return out


def make_relations(
    rng: np.random.Generator,
    entities: Entities,
    persons: Persons,
    ownership: Ownership,
    entity_reported_us: I64,
    n_lenders: int,
    cal: Calendar,
) -> Relations:
    n_e = entities.n
    est = entities.established
    last = np.minimum(entities.life_end, cal.end_day) - 20  # last day for a change
    weight = _business_weight(persons, cal)
    p = weight / weight.sum() if persons.n else weight
    parts: list[tuple[I64, I64, I64, I64, I64, I64, I64]] = []
    arange = np.arange(n_e, dtype=np.int64)

    # Legal representatives; ~8% changed once (the old one ends, the new one starts next day).
    changed = (rng.random(n_e) < 0.08) & (last - est > 400) if n_e else np.zeros(0, np.bool_)
    change_low = np.maximum(est + 180, persons.adult_day[ownership.rep] if n_e else est)
    changed &= change_low <= last
    change_day = np.where(changed, uniform_days(rng, np.minimum(change_low, last), last), -1)
    previous = rng.choice(persons.n, n_e, p=p) if n_e else arange
    ok = changed & (persons.adult_day[previous] <= est) & (previous != ownership.rep)
    change_day = np.where(ok, change_day, -1)
    current_from = np.where(ok, change_day + 1, est)
    no_end = np.full(n_e, -1, dtype=np.int64)
    zero = np.zeros(n_e, dtype=np.int64)
    parts.append((arange, ownership.rep, zero + LEGAL_REP, zero, current_from, no_end, no_end))
    idx = np.flatnonzero(ok)
    parts.append(
        (
            idx,
            previous[idx],
            zero[idx] + LEGAL_REP,
            zero[idx],
            est[idx],
            change_day[idx],
            no_end[idx],
        )
    )

    # Shareholders; ~5% of multi-owner entities were founded by one owner and later transferred.
    sh_e = ownership.sh_entity
    n_holders = np.bincount(sh_e, minlength=n_e)
    transfer_low = est + 365
    transfer = (rng.random(n_e) < 0.05) & (n_holders >= 2) & (transfer_low <= last)
    founder = np.zeros(n_e, dtype=np.int64)  # the sole founding owner, an adult at the time
    idx = np.flatnonzero(transfer)
    founder[idx] = rng.choice(persons.n, idx.shape[0], p=p) if idx.shape[0] else idx
    transfer[idx] &= persons.adult_day[founder[idx]] <= est[idx]
    transfer_day = np.where(
        transfer, uniform_days(rng, np.minimum(transfer_low, last), np.maximum(last, est)), -1
    )
    sh_from = np.where(transfer[sh_e], transfer_day[sh_e] + 1, est[sh_e])
    m = sh_e.shape[0]
    parts.append(
        (
            sh_e,
            ownership.sh_person,
            np.full(m, SHAREHOLDER, dtype=np.int64),
            ownership.sh_units,
            sh_from,
            np.full(m, -1, dtype=np.int64),
            np.full(m, -1, dtype=np.int64),
        )
    )
    idx = np.flatnonzero(transfer)
    parts.append(
        (
            idx,
            founder[idx],
            np.full(idx.shape[0], SHAREHOLDER, dtype=np.int64),
            np.full(idx.shape[0], UNITS, dtype=np.int64),
            est[idx],
            transfer_day[idx],
            np.full(idx.shape[0], -1, dtype=np.int64),
        )
    )

    # Executives: 0-3 per company, distinct persons, some left.
    shop = (entities.entity_type == INDIVIDUAL) | (entities.entity_type == SOLE)
    n_ex = np.where(shop, 0, choose(rng, [0.35, 0.35, 0.2, 0.1], n_e)) if n_e else arange
    ex_e = np.repeat(arange, n_ex)
    ex_p = rng.choice(persons.n, ex_e.shape[0], p=p) if ex_e.shape[0] else ex_e
    anyone = np.full(n_e, cal.end_day, dtype=np.int64)
    keep = _distinct_within(
        rng, ex_e, ex_p, np.ones(ex_e.shape[0], dtype=np.bool_), weight, persons.adult_day, anyone
    )
    ex_e, ex_p = ex_e[keep], ex_p[keep]
    low = np.maximum(est[ex_e], persons.adult_day[ex_p])
    high = np.minimum(low + 730, last[ex_e])
    fine = low <= high
    ex_e, ex_p, low, high = ex_e[fine], ex_p[fine], low[fine], high[fine]
    ex_from = uniform_days(rng, low, high)
    ex_to = _maybe_end(rng, ex_from, last[ex_e], 0.12)
    k = ex_e.shape[0]
    parts.append(
        (ex_e, ex_p, np.full(k, EXECUTIVE, dtype=np.int64), np.zeros(k, np.int64), ex_from, ex_to,
         np.full(k, -1, dtype=np.int64))
    )  # fmt: skip

    # Guarantors (~15% of entities): the legal representative or another person; by a lender.
    has = rng.random(n_e) < 0.15
    g_e = np.flatnonzero(has)
    other = rng.choice(persons.n, g_e.shape[0], p=p) if g_e.shape[0] else g_e
    g_p = np.where(rng.random(g_e.shape[0]) < 0.5, ownership.rep[g_e], other)
    low = np.maximum(np.maximum(est[g_e], cal.start_day - 730), persons.adult_day[g_p])
    high = last[g_e]
    fine = low <= high
    g_e, g_p, low, high = g_e[fine], g_p[fine], low[fine], high[fine]
    g_from = uniform_days(rng, low, high)
    g_to = _maybe_end(rng, g_from, high, 0.25)
    k = g_e.shape[0]
    lender = np.minimum(np.floor(rng.pareto(1.2, k) * 3).astype(np.int64), n_lenders - 1)
    parts.append(
        (g_e, g_p, np.full(k, GUARANTOR, dtype=np.int64), np.zeros(k, np.int64), g_from, g_to,
         lender)
    )  # fmt: skip

    entity, person, role, units, valid_from, valid_to, source = (
        np.concatenate([part[i] for part in parts]).astype(np.int64) for i in range(7)
    )
    order = np.lexsort((role, entity))
    entity, person, role, units = entity[order], person[order], role[order], units[order]
    valid_from, valid_to, source = valid_from[order], valid_to[order], source[order]
    n = entity.shape[0]
    backfill = (cal.start_day + rng.integers(0, 31, n)) * DAY_US
    event = (np.maximum(valid_from, valid_to) + rng.integers(1, 16, n)) * DAY_US
    after_entity = entity_reported_us[entity] + rng.integers(1, 48, n) * 3_600_000_000
    reported = np.maximum(np.maximum(backfill, event) + time_of_day(rng, n, 0, 12), after_entity)
    reported = np.minimum(reported, cal.end_us)
    return Relations(entity, person, role, units, valid_from, valid_to, source, reported)


def _maybe_end(rng: np.random.Generator, start: I64, last: I64, share: float) -> I64:
    """valid_to for a share of rows (between start + 30 days and ``last``), else -1."""
    low = start + 30
    ends = (rng.random(start.shape[0]) < share) & (low <= last)
    out: I64 = np.where(ends, uniform_days(rng, np.minimum(low, last), np.maximum(last, low)), -1)
    return out
