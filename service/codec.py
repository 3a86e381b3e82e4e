"""Between protobuf messages and the domain's objects; nothing else happens here."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from creditrisk.v1 import common_pb2, credit_risk_pb2
from features.warnings import Severity
from models.decisions import Evidence, RelatedPartyRef, WarningFlag
from models.reasons import Reason
from service.problems import InvalidRequest
from service.scoring import ScoredDecision, ScoreQuery, SubjectQuery

__all__ = [
    "decode_score_request",
    "decode_warnings_request",
    "encode_score_response",
    "encode_warnings_response",
]

_PURPOSES: dict[int, str] = {
    common_pb2.PURPOSE_LOAN_APPROVAL: "loan_approval",
    common_pb2.PURPOSE_CREDIT_CARD_APPROVAL: "credit_card_approval",
    common_pb2.PURPOSE_GUARANTEE_REVIEW: "guarantee_review",
    common_pb2.PURPOSE_POST_LOAN_MANAGEMENT: "post_loan_management",
    common_pb2.PURPOSE_SELF_INQUIRY: "self_inquiry",
}
_GRADES = {
    "A": common_pb2.GRADE_A,
    "B": common_pb2.GRADE_B,
    "C": common_pb2.GRADE_C,
    "D": common_pb2.GRADE_D,
    "E": common_pb2.GRADE_E,
}
_SEVERITIES = {
    Severity.LOW: common_pb2.SEVERITY_LOW,
    Severity.MEDIUM: common_pb2.SEVERITY_MEDIUM,
    Severity.HIGH: common_pb2.SEVERITY_HIGH,
    Severity.SEVERE: common_pb2.SEVERITY_SEVERE,
}
_SEVERITY_OF = {value: key for key, value in _SEVERITIES.items()}
_ROLES: dict[str, int] = {
    "legal_representative": common_pb2.RELATED_PARTY_ROLE_LEGAL_REPRESENTATIVE,
    "shareholder": common_pb2.RELATED_PARTY_ROLE_MAJOR_SHAREHOLDER,
    "controlled_company": common_pb2.RELATED_PARTY_ROLE_CONTROLLED_COMPANY,
}


def _subject(message: common_pb2.Subject) -> SubjectQuery:
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
        return _PURPOSES[value]
    except KeyError:
        raise InvalidRequest(
            "purpose", "unknown_value", f"purpose {value} is not a known Purpose value"
        ) from None


def decode_score_request(request: credit_risk_pb2.ScoreRequest) -> ScoreQuery:
    return ScoreQuery(
        subject=_subject(request.subject),
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
        subject=_subject(request.subject),
        purpose=_purpose(request.purpose),
        authorization_id=request.authorization_id,
        request_id=request.request_id,
        min_severity=severity,
    )


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _reason(reason: Reason) -> common_pb2.Reason:
    return common_pb2.Reason(
        code=reason.code,
        description=reason.description,
        contribution=reason.contribution,
        feature=reason.feature,
        value=reason.value,
    )


def _evidence(item: Evidence) -> common_pb2.Evidence:
    parts = item.record.split(":", 2)
    message = common_pb2.Evidence(
        record=parts[-1],
        table=item.table,
        kind=item.kind or "",
        date=item.date.isoformat() if item.date else "",
        source=item.source,
    )
    if item.amount is not None:
        message.amount = f"{item.amount:.2f}"
    if item.days_past_due is not None:
        message.overdue_days = item.days_past_due
    return message


def _related_party(via: RelatedPartyRef, share: float | None) -> common_pb2.RelatedParty:
    party = common_pb2.RelatedParty(role=_ROLES.get(via.role, 0))  # type: ignore[arg-type]
    if via.subject_type == "entity":
        party.kind = common_pb2.SUBJECT_KIND_ENTITY
        party.subject.uscc = via.subject_key
    else:
        party.kind = common_pb2.SUBJECT_KIND_PERSON
        party.pseudonym = via.subject_key
    if share is not None:
        party.share = share
    return party


def _warning(flag: WarningFlag) -> common_pb2.Warning:
    message = common_pb2.Warning(
        code=flag.code,
        severity=_SEVERITIES[flag.severity],
        description=flag.description,
        since=flag.since.isoformat(),
        evidence=[_evidence(item) for item in flag.evidence],
    )
    if flag.via is not None:
        share = next((e.share for e in flag.evidence if e.share is not None), None)
        message.via.CopyFrom(_related_party(flag.via, share))
    return message


def encode_score_response(
    answer: ScoredDecision, *, explain: bool
) -> credit_risk_pb2.ScoreResponse:
    decision = answer.subject.decision
    response = credit_risk_pb2.ScoreResponse(
        decision_id=answer.decision_id,
        score=decision.score,
        probability_of_default=decision.probability_of_default,
        grade=_GRADES[decision.grade],
        warnings=[_warning(flag) for flag in answer.warnings()],
        model_version=decision.model_version,
        features_as_of=answer.subject.features_as_of.isoformat(),
        thin_file=decision.thin_file,
        decided_at=_timestamp(answer.decided_at),
        warning_rules_version=answer.warning_rules_version,
        replayed_idempotent=answer.replayed,
        request_id=answer.request_id,
    )
    if explain:
        response.reasons.extend(_reason(reason) for reason in decision.reasons)
    return response


def encode_warnings_response(
    answer: ScoredDecision, min_severity: Severity | None
) -> credit_risk_pb2.WarningsResponse:
    return credit_risk_pb2.WarningsResponse(
        warnings=[_warning(flag) for flag in answer.warnings(min_severity)],
        features_as_of=answer.subject.features_as_of.isoformat(),
        warning_rules_version=answer.warning_rules_version,
        request_id=answer.request_id,
        decision_id=answer.decision_id,
    )
