"""Natural persons and legal entities: identifiers, attributes and latent risk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
import polars as pl

from records.generator.params import (
    DAY_US,
    F64,
    I64,
    Calendar,
    ProvinceParams,
    add_months,
    choose,
    time_of_day,
    to_days,
    uniform_days,
    ymd_strings,
)
from records.identifiers import (
    USCC_ALPHABET,
    organisation_check_character,
    resident_id_check_character,
    uscc_check_character,
)
from records.regions import DISTRICT_CODES
from records.tables import EDUCATION_LEVELS, ENTITY_STATUSES, ENTITY_TYPES, INDUSTRIES

__all__ = ["Entities", "Persons", "make_entities", "make_persons", "make_uscc"]

# Old organisation codes (before the 2015 USCC reform) are 8 digits; new ones start "MA".
_USCC_REFORM: Final = to_days(date(2015, 10, 1))
_NEW_BODY_SPACE: Final = 31**6

_ENTITY_TYPE_WEIGHTS: Final = {
    "limited_liability_company": 0.55,
    "joint_stock_company": 0.03,
    "sole_proprietorship": 0.04,
    "partnership": 0.03,
    "individual_business": 0.30,
    "farmer_cooperative": 0.03,
    "other": 0.02,
}
INDIVIDUAL: Final = ENTITY_TYPES.index("individual_business")
SOLE: Final = ENTITY_TYPES.index("sole_proprietorship")
PARTNERSHIP: Final = ENTITY_TYPES.index("partnership")
JOINT_STOCK: Final = ENTITY_TYPES.index("joint_stock_company")
COOPERATIVE: Final = ENTITY_TYPES.index("farmer_cooperative")

# GB/T 4754 sections A..T.
_COMPANY_INDUSTRY: Final = dict(
    zip(
        INDUSTRIES,
        (2, 0.5, 22, 1, 0.5, 9, 25, 3, 8, 1, 1, 9, 5, 1.5, 3, 1, 1, 2, 1, 0.05),
        strict=True,
    )
)
_SHOP_INDUSTRY: Final = dict(
    zip(
        INDUSTRIES,
        (3, 0, 4, 0, 0, 2, 55, 5, 1, 0, 0, 1, 0.5, 0, 15, 0.5, 0.5, 2, 10, 0),
        strict=True,
    )
)
_INDUSTRY_WORD: Final = dict(
    zip(
        INDUSTRIES,
        (
            "Agriculture",
            "Mining",
            "Manufacturing",
            "Power",
            "Water",
            "Construction",
            "Trading",
            "Logistics",
            "Catering",
            "Technology",
            "Capital",
            "Property",
            "Business Services",
            "Engineering",
            "Environmental",
            "Home Services",
            "Education",
            "Health",
            "Culture",
            "Consulting",
        ),
        strict=True,
    )
)
_ADJECTIVES: Final = (
    "Golden", "Eastern", "Bright", "Harmony", "Silver", "Rising", "Grand", "Evergreen",
    "Jade", "Crystal", "Prosper", "Ocean", "Summit", "Lotus", "Pioneer", "Unity",
    "Heng", "Xin", "Rui", "Tai", "Long", "Hua", "Sheng", "Feng", "Kang", "Jia",
    "Bao", "Mei", "Tian", "Yuan", "Da", "Hong",
)  # fmt: skip
_NOUNS: Final = (
    "Dragon", "Phoenix", "River", "Mountain", "Lake", "Bridge", "Star", "Harbor",
    "Garden", "Horizon", "Crane", "Pine", "Bamboo", "Cloud", "Sun", "Wave",
    "Da", "An", "Cheng", "Fu", "Xiang", "Tong", "Ming", "Yu", "Hai", "Shan",
    "Xing", "Le", "He", "Wei", "Jin", "Chang",
)  # fmt: skip
_SUFFIX: Final = {
    "limited_liability_company": " Co., Ltd.",
    "joint_stock_company": " Holdings Co., Ltd.",
    "sole_proprietorship": " Sole Proprietorship",
    "partnership": " Partnership (LP)",
    "individual_business": " Shop",
    "farmer_cooperative": " Farmers' Cooperative",
    "other": " Centre",
}
STATUS_LEVELS: Final = ENTITY_STATUSES
_EDUCATION_ORDER: Final = ("primary", "secondary", "vocational", "bachelor", "master", "doctorate")
_EDUCATION_SHARE: Final = (0.10, 0.32, 0.22, 0.28, 0.065, 0.015)


def _districts(home_province: str) -> tuple[list[str], list[str]]:
    codes = sorted(DISTRICT_CODES)
    home = [c for c in codes if c.startswith(home_province)]
    other = [c for c in codes if not c.startswith(home_province)]
    if not home:
        home = codes
    if not other:
        other = home
    return home, other


def _regions(rng: np.random.Generator, n: int, home_province: str, home_share: float) -> I64:
    """Indices into ``sorted(DISTRICT_CODES)``: mostly the home province, unevenly spread."""
    codes = sorted(DISTRICT_CODES)
    home, other = _districts(home_province)
    # Fixed, uneven district sizes (cities differ a lot); independent of n.
    sizes = np.random.Generator(np.random.PCG64(20_240_501)).gamma(2.0, 1.0, len(codes))
    home_idx = np.array([codes.index(c) for c in home], dtype=np.int64)
    other_idx = np.array([codes.index(c) for c in other], dtype=np.int64)
    at_home = rng.random(n) < home_share
    out = np.empty(n, dtype=np.int64)
    out[at_home] = home_idx[choose(rng, sizes[home_idx], int(at_home.sum()))]
    out[~at_home] = other_idx[choose(rng, sizes[other_idx], int((~at_home).sum()))]
    return out


def region_codes() -> pl.Series:
    return pl.Series(sorted(DISTRICT_CODES), dtype=pl.String)


def make_uscc(category: str, region: str, body8: str) -> str:
    """A valid USCC: ``9`` + category + division code + organisation code + check."""
    first17 = "9" + category + region + body8 + organisation_check_character(body8)
    return first17 + uscc_check_character(first17)


def new_organisation_body(value: int, prefix: str = "MA") -> str:
    """``prefix`` + 6 characters of ``value`` in base 31 over the USCC alphabet."""
    chars = []
    for _ in range(8 - len(prefix)):
        value, digit = divmod(value, 31)
        chars.append(USCC_ALPHABET[digit])
    return prefix + "".join(reversed(chars))


@dataclass(frozen=True)
class Persons:
    n: int
    resident_id: pl.Series
    id_region: I64  # index into region_codes()
    birth_day: I64
    adult_day: I64  # 18th birthday
    risk: F64  # latent, standard normal
    education: I64  # index into EDUCATION_LEVELS, -1 = null
    residence: I64  # region index, -1 = null
    reported_us: I64


@dataclass(frozen=True)
class Entities:
    n: int
    uscc: pl.Series
    region: I64
    entity_type: I64
    industry: I64
    capital: F64
    established: I64
    status: I64
    status_day: I64  # -1 = null
    life_end: I64  # last day the entity can take on new business
    own_risk: F64
    name: pl.Series


def make_persons(rng: np.random.Generator, params: ProvinceParams, cal: Calendar) -> Persons:
    n = params.persons
    region = _regions(rng, n, params.home_province, 0.82)
    end = params.end_date
    youngest = to_days(_years_before(end, 18))
    oldest = to_days(_years_before(end, 75)) + 1
    age_fraction = rng.beta(1.9, 2.6, n)
    birth = np.clip(
        youngest - np.round(age_fraction * (youngest - oldest)).astype(np.int64), oldest, youngest
    )
    adult = add_months(birth, 18 * 12)
    # Sequence numbers: redraw until every (region, birth date, sequence) is unique.
    sequence = rng.integers(0, 1000, n, dtype=np.int64)
    for _ in range(50):
        key = (region * 100_000 + (birth + 30_000)) * 1000 + sequence
        _, first = np.unique(key, return_index=True)
        clash = np.ones(n, dtype=np.bool_)
        clash[first] = False
        if not clash.any():
            break
        sequence[clash] = rng.integers(0, 1000, int(clash.sum()), dtype=np.int64)
    else:  # pragma: no cover - needs ~1000 persons per district and day
        raise RuntimeError("could not make unique resident identity numbers")
    codes = sorted(DISTRICT_CODES)
    births = ymd_strings(birth)
    first17 = [
        codes[r] + b + f"{s:03d}"
        for r, b, s in zip(region.tolist(), births, sequence.tolist(), strict=True)
    ]
    ids = [f + resident_id_check_character(f) for f in first17]

    risk = rng.standard_normal(n)
    age = (cal.end_day - birth) / 365.25
    score = -0.45 * risk + 0.025 * (45.0 - age) + rng.standard_normal(n)
    cut = np.quantile(score, np.cumsum(_EDUCATION_SHARE)[:-1]) if n else np.zeros(5)
    level = np.searchsorted(cut, score)
    education = np.array([EDUCATION_LEVELS.index(e) for e in _EDUCATION_ORDER])[level]
    u = rng.random(n)
    education = np.where(u < 0.03, EDUCATION_LEVELS.index("unknown"), education)
    education = np.where(u > 0.92, -1, education).astype(np.int64)
    home, _ = _districts(params.home_province)
    home_idx = np.array([codes.index(c) for c in home], dtype=np.int64)
    moved = rng.random(n)
    residence = np.where(
        np.isin(region, home_idx) & (moved < 0.8),
        region,
        home_idx[rng.integers(0, len(home_idx), n)],
    )
    residence = np.where(moved > 0.95, -1, residence).astype(np.int64)
    # Registered before anything is reported about them: in the 90 days before the window.
    reported = (cal.start_day - rng.integers(1, 91, n)) * DAY_US + time_of_day(rng, n, 0, 12)
    return Persons(
        n=n,
        resident_id=pl.Series("resident_id", ids, dtype=pl.String),
        id_region=region,
        birth_day=birth,
        adult_day=adult,
        risk=risk,
        education=education,
        residence=residence,
        reported_us=reported,
    )


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def make_entities(rng: np.random.Generator, params: ProvinceParams, cal: Calendar) -> Entities:
    n = params.entities
    entity_type = choose(rng, list(_ENTITY_TYPE_WEIGHTS.values()), n)
    shop = (entity_type == INDIVIDUAL) | (entity_type == SOLE)
    industry = np.where(
        shop,
        choose(rng, list(_SHOP_INDUSTRY.values()), n),
        choose(rng, list(_COMPANY_INDUSTRY.values()), n),
    )
    industry = np.where(entity_type == COOPERATIVE, INDUSTRIES.index("A"), industry)
    region = _regions(rng, n, params.home_province, 0.85)
    # Young companies dominate: age from a few months to ~30 years, skewed young.
    max_age = 30 * 365
    age = 75 + np.round(rng.beta(1.0, 3.2, n) * (max_age - 75)).astype(np.int64)
    established = cal.end_day - age
    log_median: F64 = np.where(shop, math.log(80_000.0), math.log(1_000_000.0))
    log_median = np.where(entity_type == JOINT_STOCK, math.log(20_000_000.0), log_median)
    sigma = np.where(shop, 1.0, 1.4)
    capital = np.exp(log_median + sigma * rng.standard_normal(n))
    capital = np.clip(capital, 10_000.0, 500_000_000.0)
    step = np.where(capital >= 1_000_000.0, 10_000.0, 1_000.0)
    capital = np.clip(np.round(capital / step) * step, 10_000.0, 500_000_000.0)
    own_risk = rng.standard_normal(n)
    name = _names(rng, region, entity_type, industry)
    return Entities(
        n=n,
        uscc=pl.Series("uscc", [], dtype=pl.String),  # filled by finish_entities
        region=region,
        entity_type=entity_type,
        industry=industry.astype(np.int64),
        capital=capital,
        established=established,
        status=np.zeros(n, dtype=np.int64),
        status_day=np.full(n, -1, dtype=np.int64),
        life_end=np.full(n, cal.end_day, dtype=np.int64),
        own_risk=own_risk,
        name=name,
    )


def _names(rng: np.random.Generator, region: I64, entity_type: I64, industry: I64) -> pl.Series:
    n = int(region.shape[0])
    codes = sorted(DISTRICT_CODES)
    places = pl.Series([DISTRICT_CODES[c].split(",")[0] for c in codes], dtype=pl.String)
    frame = pl.DataFrame(
        {
            "place": places.gather(region),
            "adj": pl.Series(_ADJECTIVES).gather(rng.integers(0, len(_ADJECTIVES), n)),
            "noun": pl.Series(_NOUNS).gather(rng.integers(0, len(_NOUNS), n)),
            "word": pl.Series([_INDUSTRY_WORD[s] for s in INDUSTRIES]).gather(industry),
            "suffix": pl.Series([_SUFFIX[t] for t in ENTITY_TYPES]).gather(entity_type),
        }
    )
    return frame.select(
        pl.concat_str(
            [
                pl.col("place"),
                pl.lit(" "),
                pl.col("adj"),
                pl.lit(" "),
                pl.col("noun"),
                pl.lit(" "),
                pl.col("word"),
                pl.col("suffix"),
            ]
        ).alias("name")
    ).to_series()


def finish_entities(
    rng: np.random.Generator, entities: Entities, risk: F64, cal: Calendar, established: I64
) -> Entities:
    """Registration status (driven by latent risk) and the USCC, once founding dates are known."""
    n = entities.n
    p_revoked = 1.0 / (1.0 + np.exp(-(-3.3 + 0.9 * risk)))
    u = rng.random(n)
    status = np.zeros(n, dtype=np.int64)
    status[u < 0.015] = STATUS_LEVELS.index("suspended")
    status[(u >= 0.015) & (u < 0.055)] = STATUS_LEVELS.index("deregistered")
    status[(u >= 0.055) & (u < 0.055 + p_revoked)] = STATUS_LEVELS.index("revoked")
    low = np.maximum(established + 180, cal.start_day - 5 * 365)
    high = np.full(n, cal.end_day - 20, dtype=np.int64)
    possible = low <= high
    status = np.where(possible, status, 0)
    status_day = np.where(status > 0, uniform_days(rng, np.minimum(low, high), high), -1).astype(
        np.int64
    )
    dead = (status == STATUS_LEVELS.index("revoked")) | (
        status == STATUS_LEVELS.index("deregistered")
    )
    life_end = np.where(dead, status_day, cal.end_day).astype(np.int64)
    return Entities(
        n=n,
        uscc=_usccs(rng, entities, established),
        region=entities.region,
        entity_type=entities.entity_type,
        industry=entities.industry,
        capital=entities.capital,
        established=established,
        status=status,
        status_day=status_day,
        life_end=life_end,
        own_risk=entities.own_risk,
        name=entities.name,
    )


def _usccs(rng: np.random.Generator, entities: Entities, established: I64) -> pl.Series:
    n = entities.n
    old = established < _USCC_REFORM
    n_old = int(old.sum())
    old_values = rng.choice(90_000_000, n_old, replace=False) + 10_000_000
    new_values = rng.choice(_NEW_BODY_SPACE, n - n_old, replace=False)
    bodies: list[str] = [""] * n
    for i, v in zip(np.flatnonzero(old).tolist(), old_values.tolist(), strict=True):
        bodies[i] = f"{v:08d}"
    for i, v in zip(np.flatnonzero(~old).tolist(), new_values.tolist(), strict=True):
        bodies[i] = new_organisation_body(v)
    codes = sorted(DISTRICT_CODES)
    category = np.where(entities.entity_type == INDIVIDUAL, "2", "1").tolist()
    values = [
        make_uscc(c, codes[r], b)
        for c, r, b in zip(category, entities.region.tolist(), bodies, strict=True)
    ]
    return pl.Series("uscc", values, dtype=pl.String)


def entity_reported(rng: np.random.Generator, entities: Entities, cal: Calendar) -> I64:
    """When the registry delivered the entity's (current) record."""
    n = entities.n
    backfill = (cal.start_day - rng.integers(1, 61, n)) * DAY_US
    founded = (entities.established + rng.integers(1, 11, n)) * DAY_US
    changed = np.where(
        entities.status_day >= 0, (entities.status_day + rng.integers(1, 11, n)) * DAY_US, 0
    )
    day = np.maximum(np.maximum(backfill, founded), changed)
    out: I64 = np.minimum(day + time_of_day(rng, n, 0, 12), cal.end_us)
    return out
