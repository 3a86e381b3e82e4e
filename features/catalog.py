"""The feature catalog, declared once as data.

Every feature the pipeline computes is declared here with its name, the subject kinds it
applies to, a plain-language description, its dtype, its window, the direction in which
it is expected to move risk (LightGBM monotone constraints), a version, and the reason
code and text shown to a lender when it drives a score. The pipeline's column order,
training, reason codes and ``docs/features.md`` all come from this catalog, and
:func:`catalog_hash` identifies the exact definition set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import IntEnum, StrEnum

from records.tables import PUBLIC_RECORD_KINDS

__all__ = [
    "CATALOG",
    "REFERENCE_RATES_BP",
    "Direction",
    "FeatureDtype",
    "FeatureSpec",
    "SubjectKind",
    "catalog_hash",
    "feature",
    "feature_names",
]


class SubjectKind(StrEnum):
    ENTITY = "entity"
    PERSON = "person"


class Direction(IntEnum):
    """How a larger value is expected to move the probability of default."""

    LOWERS_RISK = -1
    NONE = 0
    RAISES_RISK = 1


class FeatureDtype(StrEnum):
    FLOAT = "float"
    INT = "int"
    CATEGORY = "category"  # a small integer code; LightGBM treats it as categorical


BOTH = (SubjectKind.ENTITY, SubjectKind.PERSON)
ENTITY = (SubjectKind.ENTITY,)
PERSON = (SubjectKind.PERSON,)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kinds: tuple[SubjectKind, ...]
    description: str
    dtype: FeatureDtype
    window_months: int | None  # None: the whole retained history, or a point in time
    direction: Direction
    group: str
    reason_code: str
    reason_text: str
    version: int = 1


def _f(
    name: str,
    kinds: tuple[SubjectKind, ...],
    description: str,
    *,
    direction: Direction,
    group: str,
    code: str,
    reason: str,
    window: int | None = None,
    dtype: FeatureDtype = FeatureDtype.FLOAT,
) -> FeatureSpec:
    return FeatureSpec(name, kinds, description, dtype, window, direction, group, code, reason)


UP = Direction.RAISES_RISK
DOWN = Direction.LOWERS_RISK
FLAT = Direction.NONE

_REPAYMENT: list[FeatureSpec] = [
    _f(
        "rep_current_overdue_days",
        BOTH,
        "Largest days past due over open accounts in the latest reported month",
        direction=UP,
        group="repayment",
        code="R01",
        reason="An account is currently overdue",
    ),
    _f(
        "rep_current_overdue_amount",
        BOTH,
        "Total amount past due in the latest reported month, CNY",
        direction=UP,
        group="repayment",
        code="R02",
        reason="Amount currently past due",
    ),
    _f(
        "rep_worst_overdue_days_12m",
        BOTH,
        "Worst days past due on any account in the last 12 months",
        window=12,
        direction=UP,
        group="repayment",
        code="R03",
        reason="Serious delinquency in the last 12 months",
    ),
    _f(
        "rep_worst_overdue_days_24m",
        BOTH,
        "Worst days past due on any account in the last 24 months",
        window=24,
        direction=UP,
        group="repayment",
        code="R04",
        reason="Delinquency in the last 24 months",
    ),
]
for _days in (30, 60, 90):
    for _months in (3, 6, 12, 24):
        _REPAYMENT.append(
            _f(
                f"rep_months_{_days}plus_{_months}m",
                BOTH,
                f"Account-months {_days}+ days past due in the last {_months} months",
                window=_months,
                dtype=FeatureDtype.INT,
                direction=UP,
                group="repayment",
                code=f"R{_days}{_months:02d}",
                reason=f"Payments {_days}+ days late in the last {_months} months",
            )
        )
_REPAYMENT += [
    _f(
        "rep_months_since_delinquency",
        BOTH,
        "Months since the latest month with any amount past due (empty if never)",
        direction=DOWN,
        group="repayment",
        code="R50",
        reason="Recent delinquency",
    ),
    _f(
        "rep_utilisation",
        BOTH,
        "Balance over limit of open revolving and credit-line accounts in the latest month",
        direction=UP,
        group="repayment",
        code="R51",
        reason="High utilisation of credit lines",
    ),
    _f(
        "rep_utilisation_trend_6m",
        BOTH,
        "Change of utilisation over the last 6 months",
        window=6,
        direction=UP,
        group="repayment",
        code="R52",
        reason="Utilisation rising quickly",
    ),
    _f(
        "rep_total_balance",
        BOTH,
        "Total outstanding balance in the latest month, CNY",
        direction=FLAT,
        group="repayment",
        code="R53",
        reason="Level of outstanding debt",
    ),
    _f(
        "rep_total_limit",
        BOTH,
        "Total credit limit of open accounts, CNY",
        direction=FLAT,
        group="repayment",
        code="R54",
        reason="Size of credit lines",
    ),
    _f(
        "rep_open_accounts",
        BOTH,
        "Number of open credit accounts",
        dtype=FeatureDtype.INT,
        direction=FLAT,
        group="repayment",
        code="R55",
        reason="Number of open accounts",
    ),
    _f(
        "rep_oldest_account_months",
        BOTH,
        "Age of the oldest account, months",
        direction=DOWN,
        group="repayment",
        code="R56",
        reason="Short credit history",
    ),
    _f(
        "rep_newest_account_months",
        BOTH,
        "Age of the newest account, months",
        direction=DOWN,
        group="repayment",
        code="R57",
        reason="Recently opened accounts",
    ),
    _f(
        "rep_accounts_opened_6m",
        BOTH,
        "Accounts opened in the last 6 months",
        window=6,
        dtype=FeatureDtype.INT,
        direction=UP,
        group="repayment",
        code="R58",
        reason="Many new accounts recently",
    ),
    _f(
        "rep_revolving_share",
        BOTH,
        "Share of open accounts that are revolving (cards, microloans)",
        direction=FLAT,
        group="repayment",
        code="R59",
        reason="Product mix weighted to revolving credit",
    ),
    _f(
        "rep_secured_share",
        BOTH,
        "Share of open accounts secured by collateral or pledge",
        direction=DOWN,
        group="repayment",
        code="R60",
        reason="Little secured credit",
    ),
    _f(
        "rep_written_off_accounts",
        BOTH,
        "Accounts written off",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="repayment",
        code="R61",
        reason="Accounts written off",
    ),
    _f(
        "rep_payment_ratio_6m",
        BOTH,
        "Amount paid over amount due in the last 6 months",
        window=6,
        direction=DOWN,
        group="repayment",
        code="R62",
        reason="Paid less than was due",
    ),
    _f(
        "rep_months_reported",
        BOTH,
        "Account-months of repayment history on file",
        dtype=FeatureDtype.INT,
        direction=DOWN,
        group="repayment",
        code="R63",
        reason="Little repayment history",
    ),
    # Whole retained history: estimates how a subject usually pays, not only lately.
    _f(
        "rep_late_months_share",
        BOTH,
        "Share of reported account-months with any amount past due, over the retained history",
        direction=UP,
        group="repayment",
        code="R64",
        reason="Often paid late",
    ),
    _f(
        "rep_months_30plus_all",
        BOTH,
        "Account-months 30+ days past due over the retained history",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="repayment",
        code="R65",
        reason="Repeated serious delinquency on record",
    ),
    _f(
        "rep_worst_overdue_days_all",
        BOTH,
        "Worst days past due on any account over the retained history",
        direction=UP,
        group="repayment",
        code="R66",
        reason="Serious delinquency on record",
    ),
    _f(
        "rep_utilisation_avg_12m",
        BOTH,
        "Average monthly balance over limit of revolving and credit-line accounts in the last "
        "12 months",
        window=12,
        direction=UP,
        group="repayment",
        code="R68",
        reason="Credit lines used heavily over the year",
    ),
    _f(
        "rep_payment_ratio_24m",
        BOTH,
        "Amount paid over amount due in the last 24 months",
        window=24,
        direction=DOWN,
        group="repayment",
        code="R69",
        reason="Paid less than was due over two years",
    ),
    _f(
        "rep_accounts_ever_late",
        BOTH,
        "Accounts that were ever past due over the retained history",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="repayment",
        code="R67",
        reason="Several accounts paid late",
    ),
]

# The market's reference annual rate per instalment product, basis points: what a lender
# charges an ordinary borrower. A loan priced above it tells how risky its lender judged
# the borrower at origination (risk-based pricing). Listed in the features' descriptions,
# so that a change of reference moves the catalog hash.
REFERENCE_RATES_BP: dict[str, int] = {
    "working_capital_loan": 450,
    "term_loan": 500,
    "consumer_loan": 900,
    "mortgage": 400,
    "auto_loan": 600,
    "microloan": 1600,
    "supply_chain_finance": 550,
    "financial_leasing": 750,
}
_REFERENCE_TEXT = ", ".join(
    f"{product.replace('_', ' ')} {bp / 100:.2f}%" for product, bp in REFERENCE_RATES_BP.items()
)
_REPAYMENT += [
    _f(
        "rep_rate_spread_avg",
        BOTH,
        "Average over instalment loans of the implied annual interest rate (solved from "
        "principal, term in months and the regular instalment) minus the product's reference "
        f"rate, percentage points; references: {_REFERENCE_TEXT}",
        direction=UP,
        group="repayment",
        code="R71",
        reason="Loans priced above the market rate for their product",
    ),
    _f(
        "rep_rate_spread_max",
        BOTH,
        "Largest implied annual interest rate of an instalment loan over its product's "
        "reference rate, percentage points (see rep_rate_spread_avg)",
        direction=UP,
        group="repayment",
        code="R72",
        reason="A loan priced well above the market rate",
    ),
    _f(
        "rep_card_repayment_share_12m",
        BOTH,
        "Share of a credit card's balance beyond the minimum payment that is repaid in "
        "months paid on time in the last 12 months (median per card, averaged over cards)",
        window=12,
        direction=DOWN,
        group="repayment",
        code="R70",
        reason="Repays little more than the minimum on credit cards",
    ),
]

_PUBLIC_TEXT = {
    "court_judgment": "court judgments",
    "enforcement": "court enforcement cases",
    "dishonest_debtor": "dishonest-debtor listings",
    "consumption_restriction": "consumption restriction orders",
    "administrative_penalty": "administrative penalties",
    "tax_violation": "tax violations",
    "business_abnormal": "business-abnormal listings",
    "serious_violation": "serious-violation listings",
    "equity_pledge": "equity pledges",
    "chattel_mortgage": "chattel mortgages",
}
_PUBLIC: list[FeatureSpec] = []
for _i, _kind in enumerate(PUBLIC_RECORD_KINDS):
    _text = _PUBLIC_TEXT[_kind]
    _PUBLIC += [
        _f(
            f"pub_{_kind}_active",
            BOTH,
            f"Number of {_text} in force",
            dtype=FeatureDtype.INT,
            direction=UP,
            group="public_record",
            code=f"P{_i:01d}1",
            reason=f"Has {_text} in force",
        ),
        _f(
            f"pub_{_kind}_amount",
            BOTH,
            f"Total amount of {_text} in force, CNY",
            direction=UP,
            group="public_record",
            code=f"P{_i:01d}2",
            reason=f"Amount involved in {_text}",
        ),
        _f(
            f"pub_{_kind}_months_since",
            BOTH,
            f"Months since the most recent of the {_text} "
            "within the retention period (empty if none)",
            direction=DOWN,
            group="public_record",
            code=f"P{_i:01d}3",
            reason=f"Recent {_text}",
        ),
    ]

INQUIRY_DAYS = (7, 30, 90, 180, 365)
NEGATIVE_PUBLIC_KINDS = (
    "court_judgment",
    "enforcement",
    "dishonest_debtor",
    "consumption_restriction",
    "administrative_penalty",
    "tax_violation",
)
_PUBLIC.append(
    _f(
        "pub_negative_retained",
        BOTH,
        "Negative public records (judgments, enforcement, dishonest-debtor listings, "
        "consumption restrictions, penalties, tax violations) within the retention period, "
        "in force or cleared",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="public_record",
        code="P99",
        reason="Negative public records on file",
    )
)

_PUBLIC.append(
    _f(
        "pub_records_retained",
        BOTH,
        "Public records of any kind within the retention period, in force or cleared",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="public_record",
        code="P98",
        reason="Public records on file",
    )
)

_INQUIRY: list[FeatureSpec] = []
for _days in INQUIRY_DAYS:
    _INQUIRY += [
        _f(
            f"inq_count_{_days}d",
            BOTH,
            f"Credit inquiries in the last {_days} days",
            dtype=FeatureDtype.INT,
            direction=UP,
            group="inquiry",
            code=f"Q{_days:03d}" if _days > 99 else f"Q{_days:02d}",
            reason=f"Many credit inquiries in the last {_days} days",
            window=None,
        ),
        _f(
            f"inq_platforms_{_days}d",
            BOTH,
            f"Distinct inquiring lenders in the last {_days} days (multi-platform borrowing)",
            dtype=FeatureDtype.INT,
            direction=UP,
            group="inquiry",
            code=f"QP{_days:03d}" if _days > 99 else f"QP{_days:02d}",
            reason=f"Applications to many lenders in the last {_days} days",
        ),
    ]

_ATTRIBUTES: list[FeatureSpec] = [
    _f(
        "ent_age_months",
        ENTITY,
        "Months since establishment",
        direction=DOWN,
        group="attributes",
        code="A01",
        reason="Young company",
    ),
    _f(
        "ent_log_registered_capital",
        ENTITY,
        "Natural log of 1 + registered capital in CNY",
        direction=DOWN,
        group="attributes",
        code="A02",
        reason="Small registered capital",
    ),
    _f(
        "ent_industry",
        ENTITY,
        "GB/T 4754 industry section (categorical code 0-19 for A-T)",
        dtype=FeatureDtype.CATEGORY,
        direction=FLAT,
        group="attributes",
        code="A03",
        reason="Industry risk",
    ),
    _f(
        "ent_status_abnormal",
        ENTITY,
        "1 if the registration status is suspended, revoked or deregistered",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="attributes",
        code="A04",
        reason="Registration revoked, suspended or deregistered",
    ),
    _f(
        "subject_home_province",
        BOTH,
        "1 if registered (entity) or born (person) in the home province",
        dtype=FeatureDtype.INT,
        direction=FLAT,
        group="attributes",
        code="A05",
        reason="Registered outside the province",
    ),
    _f(
        "per_age_years",
        PERSON,
        "Age in years, from the identity number's birth date",
        direction=FLAT,
        group="attributes",
        code="A06",
        reason="Age",
    ),
    _f(
        "per_education_level",
        PERSON,
        "Highest education level as reported: 0 primary, 1 secondary, 2 vocational, "
        "3 bachelor, 4 master, 5 doctorate (empty if unknown or not reported)",
        dtype=FeatureDtype.INT,
        direction=DOWN,
        group="attributes",
        code="A07",
        reason="Education level",
    ),
]

_RELATED: list[FeatureSpec] = [
    _f(
        "rp_legal_rep_overdue_days",
        ENTITY,
        "Legal representative's largest current days past due on personal accounts",
        direction=UP,
        group="related_party",
        code="L01",
        reason="Legal representative is overdue",
    ),
    _f(
        "rp_legal_rep_dishonest",
        ENTITY,
        "1 if the legal representative is on the dishonest-debtor list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L02",
        reason="Legal representative is a dishonest debtor",
    ),
    _f(
        "rp_legal_rep_enforcement",
        ENTITY,
        "Legal representative's court enforcement cases in force",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L03",
        reason="Legal representative is under court enforcement",
    ),
    _f(
        "rp_shareholder_overdue_days",
        ENTITY,
        "Share-weighted current days past due of shareholders holding 5% or more",
        direction=UP,
        group="related_party",
        code="L04",
        reason="Major shareholders are overdue",
    ),
    _f(
        "rp_shareholder_dishonest",
        ENTITY,
        "Share held by dishonest-debtor shareholders (of holders of 5% or more)",
        direction=UP,
        group="related_party",
        code="L05",
        reason="Major shareholder is a dishonest debtor",
    ),
    _f(
        "rp_shareholder_enforcement",
        ENTITY,
        "Share held by shareholders under court enforcement (of holders of 5% or more)",
        direction=UP,
        group="related_party",
        code="L06",
        reason="Major shareholder is under court enforcement",
    ),
    _f(
        "rp_executive_dishonest",
        ENTITY,
        "Executives on the dishonest-debtor list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L07",
        reason="An executive is a dishonest debtor",
    ),
    _f(
        "rp_executive_delinquent",
        ENTITY,
        "Executives with personal accounts 30+ days past due",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L08",
        reason="An executive is seriously overdue",
    ),
    _f(
        "rp_related_people_delinquent_12m",
        ENTITY,
        "Related persons (legal representative, "
        "major shareholders, executives) with 90+ days past due in the last 12 months",
        window=12,
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L09",
        reason="Related persons had serious delinquency",
    ),
    _f(
        "rp_sibling_companies",
        ENTITY,
        "Other companies represented or controlled by this "
        "company's legal representative or major shareholders",
        dtype=FeatureDtype.INT,
        direction=FLAT,
        group="related_party",
        code="L10",
        reason="Size of the company group",
    ),
    _f(
        "rp_sibling_abnormal",
        ENTITY,
        "Sibling companies on the business-abnormal or serious-violation list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L11",
        reason="Related companies are on the abnormal list",
    ),
    _f(
        "rp_sibling_enforcement",
        ENTITY,
        "Sibling companies under court enforcement or on the dishonest-debtor list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L12",
        reason="Related companies are under enforcement",
    ),
    _f(
        "rp_sibling_defaults",
        ENTITY,
        "Sibling companies with a default in the retention period",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L13",
        reason="Related companies defaulted",
    ),
    _f(
        "rp_legal_rep_rate_spread",
        ENTITY,
        "Legal representative's largest implied loan rate over the product's reference rate, "
        "percentage points (their rep_rate_spread_max; empty if they have no instalment loan)",
        direction=UP,
        group="related_party",
        code="L14",
        reason="Legal representative's loans priced above the market rate",
    ),
    _f(
        "rp_legal_rep_education",
        ENTITY,
        "Legal representative's education level (their per_education_level)",
        dtype=FeatureDtype.INT,
        direction=DOWN,
        group="related_party",
        code="L15",
        reason="Legal representative's education level",
    ),
    _f(
        "rp_controlled_companies",
        PERSON,
        "Companies this person represents or holds 5% or more of",
        dtype=FeatureDtype.INT,
        direction=FLAT,
        group="related_party",
        code="L20",
        reason="Number of companies controlled",
    ),
    _f(
        "rp_controlled_abnormal",
        PERSON,
        "Controlled companies on the business-abnormal or serious-violation list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L21",
        reason="A company you control is on the abnormal list",
    ),
    _f(
        "rp_controlled_enforcement",
        PERSON,
        "Controlled companies under court enforcement or on the dishonest-debtor list",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L22",
        reason="A company you control is under enforcement",
    ),
    _f(
        "rp_controlled_penalties",
        PERSON,
        "Administrative penalties and tax violations in force against controlled companies",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L23",
        reason="Companies you control were penalised",
    ),
    _f(
        "rp_controlled_defaults",
        PERSON,
        "Controlled companies with a default in the retention period",
        dtype=FeatureDtype.INT,
        direction=UP,
        group="related_party",
        code="L24",
        reason="A company you control defaulted",
    ),
    _f(
        "rp_controlled_overdue_days",
        PERSON,
        "Largest current days past due of controlled companies",
        direction=UP,
        group="related_party",
        code="L25",
        reason="A company you control is overdue",
    ),
]

CATALOG: tuple[FeatureSpec, ...] = (*_REPAYMENT, *_PUBLIC, *_INQUIRY, *_ATTRIBUTES, *_RELATED)


def feature_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in CATALOG)


def feature(name: str) -> FeatureSpec:
    for spec in CATALOG:
        if spec.name == name:
            return spec
    raise KeyError(f"no feature named {name!r} in the catalog")


def catalog_hash() -> str:
    """sha256 over the canonical JSON of every definition, in catalog order."""
    payload = json.dumps([asdict(spec) for spec in CATALOG], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
