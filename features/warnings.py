"""The warning-flag catalog, declared once as data.

Every warning flag the service raises is declared here: a stable upper-case code, the
subject kinds it applies to, a severity, a plain-language description, the condition in
plain words (with the default thresholds), what evidence it cites, and a version.
:mod:`features.warning_eval` evaluates the catalog point-in-time; ``docs/warnings.md`` is
generated from it (:mod:`features.warnings_doc`), and :func:`warning_catalog_hash`
identifies the exact definition set (a decision records it).

Related-party flags (``W_RP_*``) name the related party's role in their code:
``LEGAL_REP`` (the entity's legal representative), ``SHAREHOLDER`` (a shareholder holding
5% or more) and ``CONTROLLED`` (a company the person represents or holds 5% or more of).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from features.catalog import SubjectKind

__all__ = [
    "DEFAULT_HIGH_UTILISATION",
    "DEFAULT_MULTI_PLATFORM_THRESHOLD",
    "DEFAULT_MULTI_PLATFORM_WINDOW_DAYS",
    "DEFAULT_REPEATED_PENALTIES",
    "EVIDENCE_FIELDS",
    "FLAG_COLUMNS",
    "PUBLIC_RECORD_FLAGS",
    "RELATED_PARTY_FLAGS",
    "WARNING_CATALOG",
    "Severity",
    "WarningRule",
    "warning_catalog_hash",
    "warning_rule",
]

DEFAULT_MULTI_PLATFORM_THRESHOLD = 5  # distinct inquiring lenders ...
DEFAULT_MULTI_PLATFORM_WINDOW_DAYS = 30  # ... within this many days
DEFAULT_HIGH_UTILISATION = 0.9  # balance / limit of open revolving lines
DEFAULT_REPEATED_PENALTIES = 2  # administrative penalties in force


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    SEVERE = "severe"


@dataclass(frozen=True)
class WarningRule:
    code: str
    kinds: tuple[SubjectKind, ...]
    severity: Severity
    description: str
    condition: str
    evidence: str
    version: int = 1


BOTH = (SubjectKind.ENTITY, SubjectKind.PERSON)
ENTITY = (SubjectKind.ENTITY,)
PERSON = (SubjectKind.PERSON,)

_PUBLIC_EVIDENCE = "Each public record in force: record id, kind, event date and amount"
_SINCE_EARLIEST = "Held since the earliest event date among them."


def _public(
    code: str, kinds: tuple[SubjectKind, ...], severity: Severity, what: str
) -> WarningRule:
    return WarningRule(
        code,
        kinds,
        severity,
        f"The subject has {what} in force",
        f"At least one public record of this kind with status 'active' (not cleared), "
        f"reported by the end of the as-of day. {_SINCE_EARLIEST}",
        _PUBLIC_EVIDENCE,
    )


_RP_EVIDENCE = (
    "The related party's role and key, the relation's record id and start date, "
    "and each of the related party's public records in force"
)
_RP_SINCE = (
    "Held since the later of the day the relation began and the day the related "
    "party's condition began."
)
_MAJOR = "major shareholder (holding 5% or more)"


def _rp(
    code: str, kinds: tuple[SubjectKind, ...], severity: Severity, who: str, what: str
) -> WarningRule:
    return WarningRule(
        code,
        kinds,
        severity,
        f"The subject's {who} {what}",
        f"A relation valid on the as-of date links the subject to its {who}, and that party "
        f"{what} (public records with status 'active'). One flag per related party. {_RP_SINCE}",
        _RP_EVIDENCE,
    )


_CONTROLLED = (
    "controlled company (one the person is legal representative of, or holds 5% or more of)"
)

WARNING_CATALOG: tuple[WarningRule, ...] = (
    _public("W_DISHONEST_DEBTOR", BOTH, Severity.SEVERE, "a dishonest-debtor listing"),
    WarningRule(
        "W_ENFORCEMENT",
        BOTH,
        Severity.HIGH,
        "The subject is under court enforcement (total amount in the evidence)",
        "At least one court enforcement case with status 'active'. " + _SINCE_EARLIEST,
        _PUBLIC_EVIDENCE + " (the amount under enforcement)",
    ),
    _public("W_CONSUMPTION_RESTRICTION", BOTH, Severity.HIGH, "a consumption restriction order"),
    _public("W_BUSINESS_ABNORMAL", ENTITY, Severity.HIGH, "a business-abnormal listing"),
    _public("W_SERIOUS_VIOLATION", ENTITY, Severity.SEVERE, "a serious-violation listing"),
    _public("W_TAX_VIOLATION", BOTH, Severity.MEDIUM, "a tax violation"),
    WarningRule(
        "W_REPEATED_PENALTIES",
        BOTH,
        Severity.MEDIUM,
        "The subject has repeated administrative penalties in force",
        f"At least {DEFAULT_REPEATED_PENALTIES} administrative penalties with status 'active' "
        "(threshold `repeated_penalties`). Held since the event date of the penalty that "
        "reached the threshold.",
        _PUBLIC_EVIDENCE,
    ),
    WarningRule(
        "W_REVOKED_OR_DEREGISTERED",
        ENTITY,
        Severity.SEVERE,
        "The company's business licence is revoked or it is deregistered",
        "The latest registration record has status 'revoked' or 'deregistered'. Held since "
        "the status date (the day that version was reported when no status date is given).",
        "The registration record id, the status and its date",
    ),
    _public("W_EQUITY_PLEDGE", BOTH, Severity.LOW, "an equity pledge"),
    _public("W_CHATTEL_MORTGAGE", BOTH, Severity.LOW, "a chattel mortgage"),
    WarningRule(
        "W_CURRENTLY_OVERDUE",
        BOTH,
        Severity.HIGH,
        "An account is currently overdue",
        "An account not closed, reported within the last three complete months, has days "
        "past due in its latest reported month. Held since the first month of the current "
        "run of overdue months (the earliest over the overdue accounts).",
        "Each overdue account: record id, latest month, days past due and amount past due",
    ),
    WarningRule(
        "W_DELINQUENCY_90_12M",
        BOTH,
        Severity.HIGH,
        "Payments 90 or more days late in the last 12 months",
        "Any account-month in the 12 complete months before the as-of date with 90 or more "
        "days past due. Held since the earliest such month.",
        "Per account, the first such month: record id, month, days past due and amount past due",
    ),
    WarningRule(
        "W_MULTI_PLATFORM_BURST",
        BOTH,
        Severity.MEDIUM,
        "Applications to many lenders in a short time (multi-platform borrowing)",
        f"Credit inquiries from at least {DEFAULT_MULTI_PLATFORM_THRESHOLD} distinct lenders "
        f"within the {DEFAULT_MULTI_PLATFORM_WINDOW_DAYS} days up to the end of the as-of day "
        "(threshold `multi_platform_threshold`). Held since the day the lender that reached "
        "the threshold first inquired.",
        "Each lender's first inquiry in the window: record id and date",
    ),
    WarningRule(
        "W_HIGH_UTILISATION",
        BOTH,
        Severity.MEDIUM,
        "Revolving credit lines are nearly exhausted",
        f"Total balance over total limit of open revolving accounts (cards, microloans, "
        f"working-capital lines) in their latest reported month is at least "
        f"{DEFAULT_HIGH_UTILISATION:.0%} (threshold `high_utilisation`). Held since the "
        "earliest of those latest months.",
        "Each revolving account counted: record id, month, balance (amount) and limit",
    ),
    _rp(
        "W_RP_LEGAL_REP_DISHONEST",
        ENTITY,
        Severity.HIGH,
        "legal representative",
        "is a dishonest debtor",
    ),
    _rp(
        "W_RP_LEGAL_REP_ENFORCEMENT",
        ENTITY,
        Severity.HIGH,
        "legal representative",
        "is under court enforcement",
    ),
    _rp("W_RP_SHAREHOLDER_DISHONEST", ENTITY, Severity.HIGH, _MAJOR, "is a dishonest debtor"),
    _rp(
        "W_RP_SHAREHOLDER_ENFORCEMENT",
        ENTITY,
        Severity.MEDIUM,
        _MAJOR,
        "is under court enforcement",
    ),
    _rp("W_RP_CONTROLLED_DISHONEST", PERSON, Severity.HIGH, _CONTROLLED, "is a dishonest debtor"),
    _rp(
        "W_RP_CONTROLLED_ENFORCEMENT",
        PERSON,
        Severity.MEDIUM,
        _CONTROLLED,
        "is under court enforcement",
    ),
    _rp(
        "W_RP_CONTROLLED_ABNORMAL",
        PERSON,
        Severity.MEDIUM,
        _CONTROLLED,
        "is on the business-abnormal or serious-violation list",
    ),
    WarningRule(
        "W_RP_CONTROLLED_REVOKED",
        PERSON,
        Severity.MEDIUM,
        f"The person's {_CONTROLLED} is revoked or deregistered",
        f"A relation valid on the as-of date links the person to a {_CONTROLLED}, and "
        f"that company's latest registration status is 'revoked' or 'deregistered'. {_RP_SINCE}",
        "The company's key, the relation's record id and start date, and its registration record",
    ),
)


# The columns of an evaluated flag row: (name, type, meaning).
FLAG_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("subject_key", "string", "The flagged subject: USCC, or the person's pseudonym"),
    ("code", "string", "The rule's code"),
    ("severity", "string", "low, medium, high or severe"),
    ("since", "date", "The date the flag has held since"),
    ("evidence", "string", "JSON list of evidence items (below), by date"),
    (
        "via_role",
        "string",
        "For W_RP_* flags: legal_representative, shareholder or controlled_company; else null",
    ),
    ("via_subject", "string", "For W_RP_* flags: the related party's key; else null"),
)
# The fields of every evidence item, null where they do not apply: (name, type, meaning).
EVIDENCE_FIELDS: tuple[tuple[str, str, str], ...] = (
    (
        "record",
        "string",
        "The cited record: `<table>:<source>:<id>` (a relation's id is "
        "`uscc/person_key/role/valid_from`)",
    ),
    (
        "kind",
        "string",
        "Public-record kind, registration status, product, or "
        "overdue / delinquency_90_plus / credit_inquiry / relation",
    ),
    ("date", "date", "Event date, reporting month, inquiry day or relation start"),
    ("amount", "float", "Amount involved, past due, or balance, CNY"),
    ("limit", "float", "Credit limit of a revolving account, CNY"),
    ("days_past_due", "int", "Days past due of an account-month"),
    ("role", "string", "The related party's role (related-party flags)"),
    ("subject", "string", "The related party's key (related-party flags)"),
    ("share", "float", "The shareholding fraction of a shareholder relation"),
)

# Which public-record kind in force raises which own flag (penalties: W_REPEATED_PENALTIES).
PUBLIC_RECORD_FLAGS: dict[str, str] = {
    "dishonest_debtor": "W_DISHONEST_DEBTOR",
    "enforcement": "W_ENFORCEMENT",
    "consumption_restriction": "W_CONSUMPTION_RESTRICTION",
    "business_abnormal": "W_BUSINESS_ABNORMAL",
    "serious_violation": "W_SERIOUS_VIOLATION",
    "tax_violation": "W_TAX_VIOLATION",
    "equity_pledge": "W_EQUITY_PLEDGE",
    "chattel_mortgage": "W_CHATTEL_MORTGAGE",
}
# Per related party's role (as named in a flag's ``via_role``): which of the party's own
# flags gives the related subject which W_RP_* flag.
RELATED_PARTY_FLAGS: dict[str, dict[str, str]] = {
    "legal_representative": {
        "W_DISHONEST_DEBTOR": "W_RP_LEGAL_REP_DISHONEST",
        "W_ENFORCEMENT": "W_RP_LEGAL_REP_ENFORCEMENT",
    },
    "shareholder": {
        "W_DISHONEST_DEBTOR": "W_RP_SHAREHOLDER_DISHONEST",
        "W_ENFORCEMENT": "W_RP_SHAREHOLDER_ENFORCEMENT",
    },
    "controlled_company": {
        "W_DISHONEST_DEBTOR": "W_RP_CONTROLLED_DISHONEST",
        "W_ENFORCEMENT": "W_RP_CONTROLLED_ENFORCEMENT",
        "W_BUSINESS_ABNORMAL": "W_RP_CONTROLLED_ABNORMAL",
        "W_SERIOUS_VIOLATION": "W_RP_CONTROLLED_ABNORMAL",
        "W_REVOKED_OR_DEREGISTERED": "W_RP_CONTROLLED_REVOKED",
    },
}


def warning_rule(code: str) -> WarningRule:
    for rule in WARNING_CATALOG:
        if rule.code == code:
            return rule
    raise KeyError(f"no warning rule {code!r} in the catalog")


def warning_catalog_hash() -> str:
    """sha256 over the canonical JSON of every rule, in catalog order."""
    payload = json.dumps([asdict(rule) for rule in WARNING_CATALOG], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
