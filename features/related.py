"""Related-party features: what a subject's related parties' records say about it.

An entity looks at its legal representative, its shareholders holding 5% or more
(share-weighted), its executives, and the other companies those controllers run
(siblings). A person looks at the companies they represent or hold 5% or more of. Only
relations valid on the as-of date are in ``Sources.relations``.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "MAJOR_SHARE_BP",
    "entity_distress",
    "entity_related",
    "person_distress",
    "person_related",
]

KEY = "subject_key"
MAJOR_SHARE_BP = 500  # 5%, in basis points


def person_distress(own: pl.DataFrame) -> pl.DataFrame:
    """Per person: the signals related companies inherit."""
    return own.select(
        pl.col(KEY).alias("person_key"),
        pl.col("rep_current_overdue_days").fill_null(0.0).alias("overdue_days"),
        (pl.col("pub_dishonest_debtor_active").fill_null(0) > 0).cast(pl.Int64).alias("dishonest"),
        pl.col("pub_enforcement_active").fill_null(0).alias("enforcement"),
        (pl.col("rep_worst_overdue_days_12m").fill_null(0) >= 90)
        .cast(pl.Int64)
        .alias("serious_12m"),
        # Absent stays absent (no instalment loan, education not reported).
        pl.col("rep_rate_spread_max").alias("rate_spread"),
        pl.col("per_education_level").alias("education"),
    )


def entity_distress(own: pl.DataFrame, defaulted: pl.DataFrame) -> pl.DataFrame:
    """Per entity: the signals related persons and sibling companies inherit."""
    return own.join(
        defaulted.select(KEY, pl.lit(1, pl.Int64).alias("defaulted")), on=KEY, how="left"
    ).select(
        pl.col(KEY).alias("uscc"),
        pl.col("rep_current_overdue_days").fill_null(0.0).alias("overdue_days"),
        (
            (
                pl.col("pub_business_abnormal_active").fill_null(0)
                + pl.col("pub_serious_violation_active").fill_null(0)
            )
            > 0
        )
        .cast(pl.Int64)
        .alias("abnormal"),
        (
            (
                pl.col("pub_enforcement_active").fill_null(0)
                + pl.col("pub_dishonest_debtor_active").fill_null(0)
            )
            > 0
        )
        .cast(pl.Int64)
        .alias("enforced"),
        (
            pl.col("pub_administrative_penalty_active").fill_null(0)
            + pl.col("pub_tax_violation_active").fill_null(0)
        ).alias("penalties"),
        pl.col("defaulted").fill_null(0),
    )


# Related-party features that are a value of the party, not a count: no party, or a party
# without the value, is absent rather than zero.
_ABSENT_STAYS_NULL = ("rp_legal_rep_rate_spread", "rp_legal_rep_education")

_major_holder = (pl.col("role") == "shareholder") & (pl.col("share_bp") >= MAJOR_SHARE_BP)


def _controllers(relations: pl.DataFrame) -> pl.DataFrame:
    """(uscc, person_key) of legal representatives and major shareholders."""
    return (
        relations.filter((pl.col("role") == "legal_representative") | _major_holder)
        .select("uscc", "person_key")
        .unique()
    )


def entity_related(
    entities: pl.Series,
    relations: pl.DataFrame,
    persons: pl.DataFrame,
    companies: pl.DataFrame,
) -> pl.DataFrame:
    """Related-party features of the given entities (USCCs)."""
    base = pl.DataFrame({"uscc": entities}).unique()
    rel = relations.join(persons, on="person_key", how="left").with_columns(
        pl.col("overdue_days", "dishonest", "enforcement", "serious_12m").fill_null(0)
    )
    legal = (
        rel.filter(pl.col("role") == "legal_representative")
        .group_by("uscc")
        .agg(
            pl.col("overdue_days").max().alias("rp_legal_rep_overdue_days"),
            pl.col("dishonest").max().alias("rp_legal_rep_dishonest"),
            pl.col("enforcement").sum().alias("rp_legal_rep_enforcement"),
            pl.col("rate_spread").max().alias("rp_legal_rep_rate_spread"),
            pl.col("education").min().alias("rp_legal_rep_education"),
        )
    )
    holders = rel.filter(_major_holder)
    # Shares are integer basis points: exact, order-independent sums.
    bp = pl.col("share_bp")
    shares = holders.group_by("uscc").agg(
        ((bp * pl.col("overdue_days").cast(pl.Int64)).sum()).alias("rp_shareholder_overdue_days"),
        ((bp * pl.col("dishonest")).sum()).alias("rp_shareholder_dishonest"),
        ((bp * (pl.col("enforcement") > 0).cast(pl.Int64)).sum()).alias(
            "rp_shareholder_enforcement"
        ),
    )
    executives = (
        rel.filter(pl.col("role") == "executive")
        .group_by("uscc")
        .agg(
            pl.col("dishonest").sum().alias("rp_executive_dishonest"),
            (pl.col("overdue_days") >= 30).sum().alias("rp_executive_delinquent"),
        )
    )
    people = rel.filter(pl.col("role").is_in(["legal_representative", "executive"]) | _major_holder)
    serious = people.group_by("uscc").agg(
        pl.col("person_key")
        .filter(pl.col("serious_12m") > 0)
        .n_unique()
        .alias("rp_related_people_delinquent_12m")
    )
    controllers = _controllers(relations)
    siblings = (
        controllers.join(controllers, on="person_key", suffix="_sibling")
        .filter(pl.col("uscc") != pl.col("uscc_sibling"))
        .select("uscc", "uscc_sibling")
        .unique()
        .join(companies, left_on="uscc_sibling", right_on="uscc", how="left")
        .group_by("uscc")
        .agg(
            pl.len().alias("rp_sibling_companies"),
            pl.col("abnormal").fill_null(0).sum().alias("rp_sibling_abnormal"),
            pl.col("enforced").fill_null(0).sum().alias("rp_sibling_enforcement"),
            pl.col("defaulted").fill_null(0).sum().alias("rp_sibling_defaults"),
        )
    )
    out = base
    for part in (legal, shares, executives, serious, siblings):
        out = out.join(part, on="uscc", how="left")
    counts = [c for c in out.columns if c not in ("uscc", *_ABSENT_STAYS_NULL)]
    return out.with_columns(pl.col(counts).fill_null(0)).rename({"uscc": KEY})


def person_related(
    person_keys: pl.Series, relations: pl.DataFrame, companies: pl.DataFrame
) -> pl.DataFrame:
    """Related-party features of the given persons (pseudonyms)."""
    base = pl.DataFrame({"person_key": person_keys}).unique()
    controlled = (
        _controllers(relations)
        .join(companies, on="uscc", how="left")
        .group_by("person_key")
        .agg(
            pl.len().alias("rp_controlled_companies"),
            pl.col("abnormal").fill_null(0).sum().alias("rp_controlled_abnormal"),
            pl.col("enforced").fill_null(0).sum().alias("rp_controlled_enforcement"),
            pl.col("penalties").fill_null(0).sum().alias("rp_controlled_penalties"),
            pl.col("defaulted").fill_null(0).sum().alias("rp_controlled_defaults"),
            pl.col("overdue_days").fill_null(0.0).max().alias("rp_controlled_overdue_days"),
        )
    )
    out = base.join(controlled, on="person_key", how="left")
    counts = [c for c in out.columns if c != "person_key"]
    return out.with_columns(pl.col(counts).fill_null(0)).rename({"person_key": KEY})
