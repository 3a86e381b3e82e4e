"""The reported record tables, declared once as data.

Each :class:`TableSpec` says which columns a reporter sends (``fields``), how each is
validated, which columns identify a record across versions (``natural_key``), and
which date is the record's event date. Ingestion, the generator, the schema
consistency test and ``docs/data-format.md`` are all driven by these declarations.

Storage naming: a ``resident_id`` field is stored as ``person_key`` (its HMAC
pseudonym); a ``subject_id`` field (with ``subject_type``) is stored as
``subject_key`` (the USCC for an entity, the pseudonym for a person).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "TABLES",
    "TABLE_ORDER",
    "FieldKind",
    "FieldSpec",
    "TableSpec",
    "table_spec",
]


class FieldKind(StrEnum):
    TEXT = "text"
    CODE = "code"  # reporter / platform code: upper-case letters, digits, '_', '-', '.'
    USCC = "uscc"
    RESIDENT_ID = "resident_id"
    SUBJECT_TYPE = "subject_type"
    SUBJECT_ID = "subject_id"  # USCC or resident id, by the row's subject_type
    REGION = "region"  # 6-digit administrative division code
    DATE = "date"  # YYYY-MM-DD
    MONTH = "month"  # YYYY-MM, stored as the first day of the month
    TIMESTAMP = "timestamp"  # ISO 8601; naive means UTC
    ENUM = "enum"
    AMOUNT = "amount"  # CNY, non-negative, at most 2 decimals
    INTEGER = "integer"
    SHARE = "share"  # fraction in (0, 1], at most 4 decimals


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: FieldKind
    description: str
    required: bool = True
    values: tuple[str, ...] = ()  # allowed values of an ENUM
    max_length: int = 200  # TEXT and CODE
    minimum: int = 0  # INTEGER
    maximum: int = 1_000_000  # INTEGER

    @property
    def stored_name(self) -> str:
        if self.kind is FieldKind.RESIDENT_ID:
            return "person_key"
        if self.kind is FieldKind.SUBJECT_ID:
            return "subject_key"
        return self.name


@dataclass(frozen=True)
class TableSpec:
    name: str
    description: str
    fields: tuple[FieldSpec, ...]
    natural_key: tuple[str, ...]  # file field names
    event_dates: tuple[str, ...] = ()  # must not be after reported_at
    derived_columns: tuple[str, ...] = field(default=())  # stored, computed at ingestion

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(f"table {self.name!r} has no field {name!r}")

    @property
    def stored_key(self) -> tuple[str, ...]:
        return tuple(self.field(name).stored_name for name in self.natural_key)

    @property
    def stored_columns(self) -> tuple[str, ...]:
        """Columns of the stored table, in order, before the bookkeeping columns."""
        return tuple(f.stored_name for f in self.fields) + self.derived_columns


SOURCE = FieldSpec(
    "source",
    FieldKind.CODE,
    "Reporting department or lender code, e.g. AMR-33, COURT-33, P0001",
    max_length=32,
)
REPORTED_AT = FieldSpec(
    "reported_at",
    FieldKind.TIMESTAMP,
    "When the reporter delivered this version of the record (ISO 8601; naive = UTC)",
)
SUBJECT_TYPE = FieldSpec(
    "subject_type",
    FieldKind.SUBJECT_TYPE,
    "'entity' (legal entity, keyed by USCC) or 'person' (natural person, resident id)",
    values=("entity", "person"),
)
SUBJECT_ID = FieldSpec(
    "subject_id",
    FieldKind.SUBJECT_ID,
    "The subject's USCC or resident identity number, according to subject_type",
)

ENTITY_TYPES = (
    "limited_liability_company",
    "joint_stock_company",
    "sole_proprietorship",
    "partnership",
    "individual_business",
    "farmer_cooperative",
    "other",
)
# GB/T 4754-2017 sections.
INDUSTRIES = tuple("ABCDEFGHIJKLMNOPQRST")
ENTITY_STATUSES = ("active", "suspended", "revoked", "deregistered")
EDUCATION_LEVELS = (
    "primary",
    "secondary",
    "vocational",
    "bachelor",
    "master",
    "doctorate",
    "unknown",
)
RELATION_ROLES = ("legal_representative", "shareholder", "executive", "guarantor")
PRODUCTS = (
    "working_capital_loan",
    "term_loan",
    "credit_card",
    "consumer_loan",
    "mortgage",
    "auto_loan",
    "microloan",
    "supply_chain_finance",
    "financial_leasing",
)
GUARANTEE_TYPES = ("unsecured", "guaranteed", "collateral", "pledge")
REPAYMENT_STATUSES = ("normal", "overdue", "closed", "written_off")
PUBLIC_RECORD_KINDS = (
    "court_judgment",
    "enforcement",
    "dishonest_debtor",
    "consumption_restriction",
    "administrative_penalty",
    "tax_violation",
    "business_abnormal",
    "serious_violation",
    "equity_pledge",
    "chattel_mortgage",
)
PUBLIC_RECORD_STATUSES = ("active", "cleared")
INQUIRY_PURPOSES = (
    "loan_approval",
    "credit_card_approval",
    "guarantee_review",
    "post_loan_management",
    "self_inquiry",
)
DEFAULT_KINDS = ("overdue_90_days", "charge_off", "bankruptcy", "debt_restructuring")


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "legal_entity",
            "Registered legal entities, one version per change of registration data",
            (
                FieldSpec("uscc", FieldKind.USCC, "Unified Social Credit Code (GB 32100-2015)"),
                FieldSpec("name", FieldKind.TEXT, "Registered name"),
                FieldSpec("entity_type", FieldKind.ENUM, "Legal form", values=ENTITY_TYPES),
                FieldSpec("industry", FieldKind.ENUM, "GB/T 4754 section A-T", values=INDUSTRIES),
                FieldSpec("region_code", FieldKind.REGION, "Registration division code"),
                FieldSpec("registered_capital", FieldKind.AMOUNT, "Registered capital, CNY"),
                FieldSpec("established_on", FieldKind.DATE, "Date of establishment"),
                FieldSpec("status", FieldKind.ENUM, "Registration status", values=ENTITY_STATUSES),
                FieldSpec(
                    "status_date", FieldKind.DATE, "Date the status took effect", required=False
                ),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("uscc",),
            event_dates=("established_on", "status_date"),
        ),
        TableSpec(
            "natural_person",
            "Natural persons, keyed by the pseudonym of their resident identity number",
            (
                FieldSpec(
                    "resident_id",
                    FieldKind.RESIDENT_ID,
                    "Resident identity number (GB 11643-1999); stored only as a pseudonym",
                ),
                FieldSpec(
                    "residence_region",
                    FieldKind.REGION,
                    "Division code of the current residence",
                    required=False,
                ),
                FieldSpec(
                    "education",
                    FieldKind.ENUM,
                    "Highest education level",
                    required=False,
                    values=EDUCATION_LEVELS,
                ),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("resident_id",),
            derived_columns=("birth_date", "gender", "id_region", "resident_id"),
        ),
        TableSpec(
            "relation",
            "Entity-person relations: legal representative, shareholder, executive, guarantor",
            (
                FieldSpec("uscc", FieldKind.USCC, "The legal entity"),
                FieldSpec("resident_id", FieldKind.RESIDENT_ID, "The natural person"),
                FieldSpec("role", FieldKind.ENUM, "The person's role", values=RELATION_ROLES),
                FieldSpec(
                    "share",
                    FieldKind.SHARE,
                    "Shareholding fraction in (0, 1]; required for shareholders only",
                    required=False,
                ),
                FieldSpec("valid_from", FieldKind.DATE, "First day the relation holds"),
                FieldSpec(
                    "valid_to", FieldKind.DATE, "Last day the relation holds", required=False
                ),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("uscc", "resident_id", "role", "valid_from"),
            event_dates=("valid_from",),
        ),
        TableSpec(
            "credit_account",
            "Credit accounts (loans, cards, leases) reported by lenders",
            (
                FieldSpec(
                    "account_id", FieldKind.TEXT, "Lender's account reference", max_length=64
                ),
                SUBJECT_TYPE,
                SUBJECT_ID,
                FieldSpec("product", FieldKind.ENUM, "Credit product", values=PRODUCTS),
                FieldSpec("opened_on", FieldKind.DATE, "Date the account was opened"),
                FieldSpec("maturity_on", FieldKind.DATE, "Contractual maturity", required=False),
                FieldSpec("closed_on", FieldKind.DATE, "Date closed", required=False),
                FieldSpec("credit_limit", FieldKind.AMOUNT, "Limit or principal, CNY"),
                FieldSpec("guarantee_type", FieldKind.ENUM, "Security", values=GUARANTEE_TYPES),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("source", "account_id"),
            event_dates=("opened_on", "closed_on"),
        ),
        TableSpec(
            "repayment",
            "Monthly repayment status of a credit account",
            (
                FieldSpec(
                    "account_id", FieldKind.TEXT, "Lender's account reference", max_length=64
                ),
                FieldSpec("period", FieldKind.MONTH, "Reporting month, YYYY-MM"),
                FieldSpec("balance", FieldKind.AMOUNT, "Outstanding balance at month end, CNY"),
                FieldSpec("amount_due", FieldKind.AMOUNT, "Amount due in the month, CNY"),
                FieldSpec("amount_paid", FieldKind.AMOUNT, "Amount paid in the month, CNY"),
                FieldSpec(
                    "overdue_days",
                    FieldKind.INTEGER,
                    "Days past due at month end",
                    maximum=36_500,
                ),
                FieldSpec("overdue_amount", FieldKind.AMOUNT, "Amount past due, CNY"),
                FieldSpec("status", FieldKind.ENUM, "Account status", values=REPAYMENT_STATUSES),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("source", "account_id", "period"),
            event_dates=("period",),
        ),
        TableSpec(
            "public_record",
            "Court, administrative and registry records about a subject",
            (
                FieldSpec("record_id", FieldKind.TEXT, "Reporter's case or record number"),
                FieldSpec("kind", FieldKind.ENUM, "Kind of record", values=PUBLIC_RECORD_KINDS),
                SUBJECT_TYPE,
                SUBJECT_ID,
                FieldSpec("event_date", FieldKind.DATE, "Date filed, listed or registered"),
                FieldSpec("amount", FieldKind.AMOUNT, "Amount involved, CNY", required=False),
                FieldSpec(
                    "status", FieldKind.ENUM, "Still in force?", values=PUBLIC_RECORD_STATUSES
                ),
                FieldSpec("cleared_on", FieldKind.DATE, "Date cleared or lifted", required=False),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("source", "record_id"),
            event_dates=("event_date", "cleared_on"),
        ),
        TableSpec(
            "credit_inquiry",
            "Credit report inquiries: who asked about a subject, when and why",
            (
                FieldSpec("inquiry_id", FieldKind.TEXT, "Inquirer's reference", max_length=64),
                SUBJECT_TYPE,
                SUBJECT_ID,
                FieldSpec("purpose", FieldKind.ENUM, "Purpose", values=INQUIRY_PURPOSES),
                FieldSpec("inquired_at", FieldKind.TIMESTAMP, "Time of the inquiry"),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("source", "inquiry_id"),
            event_dates=("inquired_at",),
        ),
        TableSpec(
            "default_event",
            "Default events, the labels the risk model learns from",
            (
                SUBJECT_TYPE,
                SUBJECT_ID,
                FieldSpec("kind", FieldKind.ENUM, "Kind of default", values=DEFAULT_KINDS),
                FieldSpec("default_date", FieldKind.DATE, "Date of default"),
                FieldSpec("amount", FieldKind.AMOUNT, "Amount in default, CNY", required=False),
                FieldSpec(
                    "account_id",
                    FieldKind.TEXT,
                    "Account concerned, if any",
                    required=False,
                    max_length=64,
                ),
                SOURCE,
                REPORTED_AT,
            ),
            natural_key=("source", "subject_type", "subject_id", "kind", "default_date"),
            event_dates=("default_date",),
        ),
    )
}

# Ingest in this order: later tables refer to subjects and accounts of earlier ones.
TABLE_ORDER: tuple[str, ...] = tuple(TABLES)


def table_spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        known = ", ".join(TABLES)
        raise ValueError(f"unknown table {name!r}; known tables: {known}") from None
