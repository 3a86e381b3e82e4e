"""Between protobuf messages and the domain's objects; nothing else happens here."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from creditrisk.v1 import common_pb2, credit_risk_pb2
from features.warnings import Severity
from models.decisions import (
    Evidence,
    RelatedPartyRef,
    SubjectDecision,
    SubjectMemo,
    WarningFlag,
)
from models.reasons import Reason
from service.problems import InvalidRequest
from service.scoring import ScoredDecision, ScoreQuery, SubjectQuery

__all__ = [
    "GRADE_VALUES",
    "PURPOSES",
    "PURPOSE_VALUES",
    "ROLE_VALUES",
    "SEVERITY_VALUES",
    "ScoreResponseEncoder",
    "decode_score_request",
    "decode_warnings_request",
    "encode_warnings_response",
    "evidence_message",
    "related_party_message",
    "subject_query",
    "timestamp_message",
    "warning_message",
]

# The contract's enum values for the domain's names: one table each, for every encoder.
PURPOSES: dict[int, str] = {
    common_pb2.PURPOSE_LOAN_APPROVAL: "loan_approval",
    common_pb2.PURPOSE_CREDIT_CARD_APPROVAL: "credit_card_approval",
    common_pb2.PURPOSE_GUARANTEE_REVIEW: "guarantee_review",
    common_pb2.PURPOSE_POST_LOAN_MANAGEMENT: "post_loan_management",
    common_pb2.PURPOSE_SELF_INQUIRY: "self_inquiry",
}
PURPOSE_VALUES: dict[str, Any] = {name: value for value, name in PURPOSES.items()}
GRADE_VALUES: dict[str, Any] = {
    "A": common_pb2.GRADE_A,
    "B": common_pb2.GRADE_B,
    "C": common_pb2.GRADE_C,
    "D": common_pb2.GRADE_D,
    "E": common_pb2.GRADE_E,
}
SEVERITY_VALUES: dict[str, Any] = {  # keyed by Severity (a str enum) or its text
    Severity.LOW: common_pb2.SEVERITY_LOW,
    Severity.MEDIUM: common_pb2.SEVERITY_MEDIUM,
    Severity.HIGH: common_pb2.SEVERITY_HIGH,
    Severity.SEVERE: common_pb2.SEVERITY_SEVERE,
}
_SEVERITY_OF = {value: Severity(key) for key, value in SEVERITY_VALUES.items()}
ROLE_VALUES: dict[str, Any] = {
    "legal_representative": common_pb2.RELATED_PARTY_ROLE_LEGAL_REPRESENTATIVE,
    "shareholder": common_pb2.RELATED_PARTY_ROLE_MAJOR_SHAREHOLDER,
    "controlled_company": common_pb2.RELATED_PARTY_ROLE_CONTROLLED_COMPANY,
}


def subject_query(message: common_pb2.Subject) -> SubjectQuery:
    which = message.WhichOneof("id")
    if which == "uscc":
        return SubjectQuery(uscc=message.uscc)
    if which == "resident_id":
        return SubjectQuery(resident_id=message.resident_id)
    return SubjectQuery()


def _purpose(value: int) -> str | None:
    if value == common_pb2.PURPOSE_UNSPECIFIED:
        return None
    try:
        return PURPOSES[value]
    except KeyError:
        raise InvalidRequest(
            "purpose", "unknown_value", f"purpose {value} is not a known Purpose value"
        ) from None


def decode_score_request(request: credit_risk_pb2.ScoreRequest) -> ScoreQuery:
    return ScoreQuery(
        subject=subject_query(request.subject),
        purpose=_purpose(request.purpose),
        authorization_id=request.authorization_id,
        request_id=request.request_id,
        explain=request.explain,
    )


def decode_warnings_request(request: credit_risk_pb2.WarningsRequest) -> ScoreQuery:
    severity: Severity | None = None
    if request.min_severity != common_pb2.SEVERITY_UNSPECIFIED:
        try:
            severity = _SEVERITY_OF[request.min_severity]
        except KeyError:
            raise InvalidRequest(
                "min_severity",
                "unknown_value",
                f"min_severity {request.min_severity} is not a known Severity value",
            ) from None
    return ScoreQuery(
        subject=subject_query(request.subject),
        purpose=_purpose(request.purpose),
        authorization_id=request.authorization_id,
        request_id=request.request_id,
        min_severity=severity,
    )


def timestamp_message(moment: datetime) -> timestamp_pb2.Timestamp:
    # An aware datetime; built directly (FromDatetime costs a few microseconds more).
    return timestamp_pb2.Timestamp(seconds=int(moment.timestamp()), nanos=moment.microsecond * 1000)


def _reason(reason: Reason) -> common_pb2.Reason:
    return common_pb2.Reason(
        code=reason.code,
        description=reason.description,
        contribution=reason.contribution,
        feature=reason.feature,
        value=reason.value,
    )


def evidence_message(
    record: str, kind: str | None, day: str, amount: float | None, days_past_due: int | None
) -> common_pb2.Evidence:
    """One evidence item; ``record`` is ``<table>:<source>:<id>`` as the flags cite it."""
    parts = record.split(":", 2)
    message = common_pb2.Evidence(
        record=parts[-1],
        table=parts[0],
        kind=kind or "",
        date=day,
        source=parts[1] if len(parts) > 2 else "",
    )
    if amount is not None:
        message.amount = f"{amount:.2f}"
    if days_past_due is not None:
        message.overdue_days = days_past_due
    return message


def _evidence(item: Evidence) -> common_pb2.Evidence:
    return evidence_message(
        item.record,
        item.kind,
        item.date.isoformat() if item.date else "",
        item.amount,
        item.days_past_due,
    )


def related_party_message(via: RelatedPartyRef, share: float | None) -> common_pb2.RelatedParty:
    party = common_pb2.RelatedParty(role=ROLE_VALUES.get(via.role, 0))
    if via.subject_type == "entity":
        party.kind = common_pb2.SUBJECT_KIND_ENTITY
        party.subject.uscc = via.subject_key
    else:
        party.kind = common_pb2.SUBJECT_KIND_PERSON
        party.pseudonym = via.subject_key
    if share is not None:
        party.share = share
    return party


def warning_message(flag: WarningFlag) -> common_pb2.Warning:
    message = common_pb2.Warning(
        code=flag.code,
        severity=SEVERITY_VALUES[flag.severity],
        description=flag.description,
        since=flag.since.isoformat(),
        evidence=[_evidence(item) for item in flag.evidence],
    )
    if flag.via is not None:
        share = next((e.share for e in flag.evidence if e.share is not None), None)
        message.via.CopyFrom(related_party_message(flag.via, share))
    return message


def _decision_part(subject: SubjectDecision, rules: str, explain: bool) -> bytes:
    """The fields of a ScoreResponse that only depend on the subject's decision."""
    decision = subject.decision
    response = credit_risk_pb2.ScoreResponse(
        score=decision.score,
        probability_of_default=decision.probability_of_default,
        grade=GRADE_VALUES[decision.grade],
        warnings=[warning_message(flag) for flag in subject.warnings],
        model_version=decision.model_version,
        features_as_of=subject.features_as_of.isoformat(),
        thin_file=decision.thin_file,
        warning_rules_version=rules,
    )
    if explain:
        response.reasons.extend(_reason(reason) for reason in decision.reasons)
    return response.SerializeToString()


class ScoreResponseEncoder:
    """ScoreResponse bytes, fast: the decision's part of a subject's answer is serialised
    once and kept (keyed by the decision object, so a replaced decision is encoded anew);
    each answer appends its own fields (decision id, time, request id, stream index).
    Concatenated protobuf encodings parse as one message with the fields of both, so the
    bytes are exactly a ScoreResponse."""

    def __init__(self) -> None:
        self._parts = SubjectMemo(self._part)

    @staticmethod
    def _part(subject: SubjectDecision, variant: tuple[bool, str]) -> bytes:
        explain, rules = variant
        return _decision_part(subject, rules, explain)

    def prepare(self, subjects: Iterable[SubjectDecision], warning_rules_version: str) -> None:
        """Serialise ahead of the requests the part of these subjects' answers without
        reasons (what most calls ask)."""
        self._parts.prepare(subjects, (False, warning_rules_version))

    def encode(self, answer: ScoredDecision, *, explain: bool, stream_index: int = 0) -> bytes:
        part = self._parts.get(answer.subject, (explain, answer.warning_rules_version))
        own = credit_risk_pb2.ScoreResponse(
            decision_id=answer.decision_id,
            decided_at=timestamp_message(answer.decided_at),
            replayed_idempotent=answer.replayed,
            request_id=answer.request_id,
            stream_index=stream_index,
        )
        return part + own.SerializeToString()


def encode_warnings_response(
    answer: ScoredDecision, min_severity: Severity | None
) -> credit_risk_pb2.WarningsResponse:
    return credit_risk_pb2.WarningsResponse(
        warnings=[warning_message(flag) for flag in answer.warnings(min_severity)],
        features_as_of=answer.subject.features_as_of.isoformat(),
        warning_rules_version=answer.warning_rules_version,
        request_id=answer.request_id,
        decision_id=answer.decision_id,
    )
