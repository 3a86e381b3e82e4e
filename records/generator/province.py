"""``generate_province``: all record tables of a synthetic province, deterministic per seed.

The model, in order:

1. Persons and entities, each with a latent risk (standard normal). An entity's risk mixes its
   own with its legal representative's and shareholders' (``relations.entity_risk``).
2. Distress: each subject may fall into distress at some month of the window (monthly hazard
   rising with latent risk); an entity often follows its legal representative into distress.
3. Accounts and a month-by-month repayment process (``repayment.simulate``): misses, cures
   and roll rates depend on latent risk and distress, so defaults (90+ days past due) are
   preceded by 30 -> 60 -> 90 days past due, rising card utilisation and, often, a burst of
   credit inquiries; court records follow defaults.
4. Public records and inquiries at rates driven by the same latent risk.

Each stage draws from its own generator derived from the seed and the stage number, so
changing the draws of one stage does not shift the random streams of the others.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

from records.generator.accounts import LENDERS, N_LENDERS, Accounts, make_accounts
from records.generator.params import (
    F64,
    I64,
    NONE,
    Calendar,
    ProvinceParams,
    amount_column,
    date_column,
    enum_column,
    integer_column,
    month_column,
    rng_for,
    share_column,
    sigmoid,
    text_column,
    timestamp_column,
)
from records.generator.public import (
    Inquiries,
    PublicRecords,
    make_inquiries,
    make_public_records,
    public_sources,
)
from records.generator.relations import (
    GUARANTOR,
    Relations,
    assign_ownership,
    entity_risk,
    make_relations,
)
from records.generator.repayment import Defaults, Outcome, simulate
from records.generator.subjects import (
    STATUS_LEVELS,
    Entities,
    Persons,
    entity_reported,
    finish_entities,
    make_entities,
    make_persons,
    region_codes,
)
from records.tables import (
    DEFAULT_KINDS,
    EDUCATION_LEVELS,
    ENTITY_TYPES,
    GUARANTEE_TYPES,
    INDUSTRIES,
    INQUIRY_PURPOSES,
    PRODUCTS,
    PUBLIC_RECORD_KINDS,
    RELATION_ROLES,
    REPAYMENT_STATUSES,
    TABLE_ORDER,
    TABLES,
)

__all__ = ["generate_province"]

# Stages of the random stream (each gets its own generator derived from the seed).
(
    _PERSONS,
    _ENTITIES,
    _OWNERSHIP,
    _STATUS,
    _RELATIONS,
    _DISTRESS,
    _ACCOUNTS,
    _REPAYMENT,
    _PUBLIC,
    _INQUIRIES,
) = range(10)

# Monthly hazard of falling into distress (logit at average risk) and its risk slope.
_DISTRESS_PERSON: Final = (-7.0, 1.2)
_DISTRESS_ENTITY: Final = (-7.2, 1.2)
_CONTAGION: Final = 0.4  # P(entity follows its legal representative into distress)


def _distress(rng: np.random.Generator, risk: F64, logit: tuple[float, float], months: int) -> I64:
    hazard = sigmoid(logit[0] + logit[1] * risk)
    wait = rng.geometric(hazard) - 1 if risk.shape[0] else np.zeros(0, dtype=np.int64)
    out: I64 = np.where(wait < months, wait, NONE).astype(np.int64)
    return out


def generate_province(params: ProvinceParams) -> dict[str, pl.DataFrame]:
    """All record tables, keyed in ``TABLE_ORDER``; columns and dtypes as declared."""
    cal = Calendar.of(params)
    persons = make_persons(rng_for(params.seed, _PERSONS), params, cal)
    draft = make_entities(rng_for(params.seed, _ENTITIES), params, cal)
    ownership = assign_ownership(rng_for(params.seed, _OWNERSHIP), draft, persons, cal)
    e_risk = entity_risk(draft.own_risk, persons, ownership)
    entities = finish_entities(
        rng_for(params.seed, _STATUS), draft, e_risk, cal, ownership.established
    )
    rng = rng_for(params.seed, _RELATIONS)
    e_reported = entity_reported(rng, entities, cal)
    relations = make_relations(rng, entities, persons, ownership, e_reported, N_LENDERS, cal)

    rng = rng_for(params.seed, _DISTRESS)
    p_distress = _distress(rng, persons.risk, _DISTRESS_PERSON, cal.months)
    e_distress = _distress(rng, e_risk, _DISTRESS_ENTITY, cal.months)
    if entities.n:
        follows = rng.random(entities.n) < _CONTAGION
        lag = rng.geometric(0.3, entities.n) - 1
        rep_distress = p_distress[ownership.rep]
        e_distress = np.where(
            follows & (rep_distress < NONE), np.minimum(e_distress, rep_distress + lag), e_distress
        )
        e_distress = np.where(e_distress < cal.months, e_distress, NONE)
    distress = np.concatenate([e_distress, p_distress])
    risk = np.concatenate([e_risk, persons.risk])
    is_person = np.arange(entities.n + persons.n) >= entities.n

    has_guarantor = np.zeros(entities.n, dtype=np.bool_)
    has_guarantor[relations.entity[relations.role == GUARANTOR]] = True
    accounts = make_accounts(
        rng_for(params.seed, _ACCOUNTS), entities, persons, e_risk, distress, has_guarantor, cal
    )
    outcome = simulate(rng_for(params.seed, _REPAYMENT), accounts, cal, entities.n)

    first_default = np.full(entities.n + persons.n, -1, dtype=np.int64)
    d = outcome.defaults
    if d.subject.shape[0]:
        order = np.lexsort((d.day, d.subject))
        subjects, first = np.unique(d.subject[order], return_index=True)
        first_default[subjects] = d.day[order][first]
    low_day = np.concatenate([entities.established + 30, persons.adult_day])
    high_day = np.concatenate([entities.life_end, np.full(persons.n, cal.end_day)])
    capital = np.concatenate([entities.capital, np.zeros(persons.n)])
    public = make_public_records(
        rng_for(params.seed, _PUBLIC), risk, is_person, low_day, capital, first_default, cal
    )
    inquiries = make_inquiries(
        rng_for(params.seed, _INQUIRIES),
        accounts,
        outcome.closed_day,
        risk,
        is_person,
        low_day,
        high_day,
        distress,
        cal,
    )

    subject_ids = pl.concat([entities.uscc, persons.resident_id]).alias("subject_id")
    home = params.home_province
    frames = {
        "legal_entity": _legal_entity(entities, e_reported, home),
        "natural_person": _natural_person(persons, home),
        "relation": _relation(relations, entities, persons, home),
        "credit_account": _credit_account(accounts, outcome, subject_ids, entities.n),
        "repayment": _repayment(accounts, outcome, cal),
        "public_record": _public_record(public, subject_ids, entities.n, home),
        "credit_inquiry": _credit_inquiry(inquiries, subject_ids, entities.n, home),
        "default_event": _default_event(d, accounts, subject_ids, entities.n),
    }
    for name in TABLE_ORDER:
        frames[name] = frames[name].select(TABLES[name].field_names)
    return {name: frames[name] for name in TABLE_ORDER}


def _constant(name: str, value: str, n: int) -> pl.Series:
    return pl.repeat(value, n, dtype=pl.String, eager=True).alias(name)


def _subject_type(is_person: np.ndarray) -> pl.Series:
    return enum_column("subject_type", ("entity", "person"), is_person.astype(np.int64))


def _legal_entity(entities: Entities, reported: I64, home: str) -> pl.DataFrame:
    n = entities.n
    return pl.DataFrame(
        [
            entities.uscc.alias("uscc"),
            entities.name.alias("name"),
            enum_column("entity_type", ENTITY_TYPES, entities.entity_type),
            enum_column("industry", INDUSTRIES, entities.industry),
            text_column("region_code", region_codes(), entities.region),
            amount_column("registered_capital", entities.capital),
            date_column("established_on", entities.established),
            enum_column("status", STATUS_LEVELS, entities.status),
            date_column("status_date", entities.status_day, entities.status_day >= 0),
            _constant("source", f"AMR-{home}", n),
            timestamp_column("reported_at", reported),
        ]
    )


def _natural_person(persons: Persons, home: str) -> pl.DataFrame:
    n = persons.n
    return pl.DataFrame(
        [
            persons.resident_id.alias("resident_id"),
            text_column(
                "residence_region",
                region_codes(),
                np.maximum(persons.residence, 0),
                persons.residence >= 0,
            ),
            _masked_enum("education", EDUCATION_LEVELS, persons.education),
            _constant("source", f"PSB-{home}", n),
            timestamp_column("reported_at", persons.reported_us),
        ]
    )


def _masked_enum(name: str, levels: tuple[str, ...], codes: I64) -> pl.Series:
    column = enum_column(name, levels, np.maximum(codes, 0))
    return pl.select(pl.when(pl.Series(codes >= 0)).then(column).alias(name)).to_series()


def _relation(
    relations: Relations, entities: Entities, persons: Persons, home: str
) -> pl.DataFrame:
    sources = pl.Series([*LENDERS, f"AMR-{home}"], dtype=pl.String)
    source_index = np.where(relations.source >= 0, relations.source, len(LENDERS))
    return pl.DataFrame(
        [
            entities.uscc.gather(relations.entity).alias("uscc"),
            persons.resident_id.gather(relations.person).alias("resident_id"),
            enum_column("role", RELATION_ROLES, relations.role),
            share_column("share", relations.units, relations.units > 0),
            date_column("valid_from", relations.valid_from),
            date_column("valid_to", relations.valid_to, relations.valid_to >= 0),
            text_column("source", sources, source_index),
            timestamp_column("reported_at", relations.reported_us),
        ]
    )


def _lenders() -> pl.Series:
    return pl.Series(LENDERS, dtype=pl.String)


def _credit_account(
    acc: Accounts, outcome: Outcome, subject_ids: pl.Series, n_entities: int
) -> pl.DataFrame:
    closed = outcome.closed_day
    return pl.DataFrame(
        [
            acc.account_id.alias("account_id"),
            _subject_type(acc.subject >= n_entities),
            text_column("subject_id", subject_ids, acc.subject),
            enum_column("product", PRODUCTS, acc.product),
            date_column("opened_on", acc.opened),
            date_column("maturity_on", acc.maturity, acc.maturity >= 0),
            date_column("closed_on", closed, closed >= 0),
            amount_column("credit_limit", acc.limit),
            enum_column("guarantee_type", GUARANTEE_TYPES, acc.guarantee),
            text_column("source", _lenders(), acc.lender),
            timestamp_column("reported_at", outcome.account_reported_us),
        ]
    )


def _repayment(acc: Accounts, outcome: Outcome, cal: Calendar) -> pl.DataFrame:
    r = outcome.repayments
    return pl.DataFrame(
        [
            text_column("account_id", acc.account_id, r.account),
            month_column("period", r.month.astype(np.int64) + cal.start_month),
            amount_column("balance", r.balance),
            amount_column("amount_due", r.amount_due),
            amount_column("amount_paid", r.amount_paid),
            integer_column("overdue_days", r.overdue_days),
            amount_column("overdue_amount", r.overdue_amount),
            enum_column("status", REPAYMENT_STATUSES, r.status),
            text_column("source", _lenders(), acc.lender[r.account]),
            timestamp_column("reported_at", r.reported_us),
        ]
    )


def _public_record(
    public: PublicRecords, subject_ids: pl.Series, n_entities: int, home: str
) -> pl.DataFrame:
    cleared = public.cleared_day
    has_amount = ~np.isnan(public.amount)
    return pl.DataFrame(
        [
            public.record_id.alias("record_id"),
            enum_column("kind", PUBLIC_RECORD_KINDS, public.kind),
            _subject_type(public.subject >= n_entities),
            text_column("subject_id", subject_ids, public.subject),
            date_column("event_date", public.day),
            amount_column("amount", np.nan_to_num(public.amount), has_amount),
            enum_column("status", ("active", "cleared"), (cleared >= 0).astype(np.int64)),
            date_column("cleared_on", cleared, cleared >= 0),
            text_column("source", pl.Series(public_sources(home)), public.source),
            timestamp_column("reported_at", public.reported_us),
        ]
    )


def _credit_inquiry(
    inquiries: Inquiries, subject_ids: pl.Series, n_entities: int, home: str
) -> pl.DataFrame:
    sources = pl.Series([*LENDERS, f"CRC-{home}"], dtype=pl.String)
    return pl.DataFrame(
        [
            inquiries.inquiry_id.alias("inquiry_id"),
            _subject_type(inquiries.subject >= n_entities),
            text_column("subject_id", subject_ids, inquiries.subject),
            enum_column("purpose", INQUIRY_PURPOSES, inquiries.purpose),
            timestamp_column("inquired_at", inquiries.inquired_us),
            text_column("source", sources, inquiries.source),
            timestamp_column("reported_at", inquiries.reported_us),
        ]
    )


def _default_event(
    d: Defaults, acc: Accounts, subject_ids: pl.Series, n_entities: int
) -> pl.DataFrame:
    order = np.argsort(d.reported_us, kind="stable")
    has_account = d.account[order] >= 0
    has_amount = ~np.isnan(d.amount[order])
    return pl.DataFrame(
        [
            _subject_type(d.subject[order] >= n_entities),
            text_column("subject_id", subject_ids, d.subject[order]),
            enum_column("kind", DEFAULT_KINDS, d.kind[order]),
            date_column("default_date", d.day[order]),
            amount_column("amount", np.nan_to_num(d.amount[order]), has_amount),
            text_column("account_id", acc.account_id, np.maximum(d.account[order], 0), has_account)
            if acc.n
            else pl.Series("account_id", [None] * order.shape[0], dtype=pl.String),
            text_column("source", _lenders(), d.lender[order]),
            timestamp_column("reported_at", d.reported_us[order]),
        ]
    )
