"""service.codec: decoding requests into ScoreQuery; encoding answers."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, date, datetime

import numpy as np
import pytest

from creditrisk.v1 import common_pb2, credit_risk_pb2
from features.warnings import Severity
from models.decisions import SubjectDecision
from models.model import Decision
from records.tables import INQUIRY_PURPOSES
from service.codec import ScoreResponseEncoder, decode_score_request, decode_warnings_request
from service.problems import InvalidRequest
from service.scoring import ScoredDecision, ScoreQuery, SubjectQuery

USCC = "91350100M000100Y43"
RESIDENT_ID = "11010519491231002X"

PURPOSES = [
    (common_pb2.PURPOSE_LOAN_APPROVAL, "loan_approval"),
    (common_pb2.PURPOSE_CREDIT_CARD_APPROVAL, "credit_card_approval"),
    (common_pb2.PURPOSE_GUARANTEE_REVIEW, "guarantee_review"),
    (common_pb2.PURPOSE_POST_LOAN_MANAGEMENT, "post_loan_management"),
    (common_pb2.PURPOSE_SELF_INQUIRY, "self_inquiry"),
]
SEVERITIES = [
    (common_pb2.SEVERITY_LOW, Severity.LOW),
    (common_pb2.SEVERITY_MEDIUM, Severity.MEDIUM),
    (common_pb2.SEVERITY_HIGH, Severity.HIGH),
    (common_pb2.SEVERITY_SEVERE, Severity.SEVERE),
]


def test_a_full_score_request_decodes() -> None:
    request = credit_risk_pb2.ScoreRequest(
        subject=common_pb2.Subject(uscc=USCC),
        purpose=common_pb2.PURPOSE_LOAN_APPROVAL,
        authorization_id="auth-1",
        request_id="req-1",
        explain=True,
    )
    assert decode_score_request(request) == ScoreQuery(
        subject=SubjectQuery(uscc=USCC),
        purpose="loan_approval",
        authorization_id="auth-1",
        request_id="req-1",
        explain=True,
    )


def test_uscc_subject() -> None:
    request = credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(uscc=USCC))
    assert decode_score_request(request).subject == SubjectQuery(uscc=USCC, resident_id=None)


def test_resident_id_subject() -> None:
    request = credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(resident_id=RESIDENT_ID))
    subject = decode_score_request(request).subject
    assert subject == SubjectQuery(uscc=None, resident_id=RESIDENT_ID)


def test_no_subject_sets_neither_identifier() -> None:
    assert decode_score_request(credit_risk_pb2.ScoreRequest()).subject == SubjectQuery()
    empty_subject = credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject())
    assert decode_score_request(empty_subject).subject == SubjectQuery()


def test_an_explicitly_empty_identifier_is_still_the_one_set() -> None:
    # A oneof member set to "" is present: the scorer then rejects it as malformed
    # rather than as missing.
    request = credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(uscc=""))
    assert decode_score_request(request).subject == SubjectQuery(uscc="")


def test_the_last_oneof_member_set_wins() -> None:
    request = credit_risk_pb2.ScoreRequest()
    request.subject.uscc = USCC
    request.subject.resident_id = RESIDENT_ID
    assert decode_score_request(request).subject == SubjectQuery(resident_id=RESIDENT_ID)


@pytest.mark.parametrize(("value", "name"), PURPOSES)
def test_every_purpose_maps_to_its_records_value(value: int, name: str) -> None:
    request = credit_risk_pb2.ScoreRequest(purpose=value)  # type: ignore[arg-type]
    assert decode_score_request(request).purpose == name
    warnings = credit_risk_pb2.WarningsRequest(purpose=value)  # type: ignore[arg-type]
    assert decode_warnings_request(warnings).purpose == name


def test_every_proto_purpose_is_mapped_to_an_inquiry_purpose() -> None:
    values = [v.number for v in common_pb2.Purpose.DESCRIPTOR.values if v.number != 0]
    names = {
        decode_score_request(credit_risk_pb2.ScoreRequest(purpose=v)).purpose  # type: ignore[arg-type]
        for v in values
    }
    assert names == set(INQUIRY_PURPOSES)
    assert len(names) == len(values)


def test_unspecified_purpose_is_none() -> None:
    assert decode_score_request(credit_risk_pb2.ScoreRequest()).purpose is None
    assert decode_warnings_request(credit_risk_pb2.WarningsRequest()).purpose is None


@pytest.mark.parametrize("value", [6, 99, -1, 2**31 - 1, -(2**31)])
def test_an_unknown_purpose_value_is_invalid(value: int) -> None:
    request = credit_risk_pb2.ScoreRequest()
    request.purpose = value  # type: ignore[assignment]  # proto3 enums are open
    with pytest.raises(InvalidRequest) as caught:
        decode_score_request(request)
    assert (caught.value.field, caught.value.rule) == ("purpose", "unknown_value")
    warnings = credit_risk_pb2.WarningsRequest()
    warnings.purpose = value  # type: ignore[assignment]
    with pytest.raises(InvalidRequest) as caught:
        decode_warnings_request(warnings)
    assert (caught.value.field, caught.value.rule) == ("purpose", "unknown_value")


def test_an_unknown_purpose_survives_the_wire_and_is_invalid() -> None:
    sent = credit_risk_pb2.ScoreRequest()
    sent.purpose = 99  # type: ignore[assignment]
    received = credit_risk_pb2.ScoreRequest.FromString(sent.SerializeToString())
    with pytest.raises(InvalidRequest) as caught:
        decode_score_request(received)
    assert caught.value.field == "purpose"


@pytest.mark.parametrize(("value", "severity"), SEVERITIES)
def test_every_min_severity_maps_to_its_severity(value: int, severity: Severity) -> None:
    request = credit_risk_pb2.WarningsRequest(min_severity=value)  # type: ignore[arg-type]
    assert decode_warnings_request(request).min_severity is severity


def test_unspecified_min_severity_is_none() -> None:
    assert decode_warnings_request(credit_risk_pb2.WarningsRequest()).min_severity is None


@pytest.mark.parametrize("value", [5, 99, -1])
def test_an_unknown_min_severity_is_invalid(value: int) -> None:
    request = credit_risk_pb2.WarningsRequest(purpose=common_pb2.PURPOSE_LOAN_APPROVAL)
    request.min_severity = value  # type: ignore[assignment]
    with pytest.raises(InvalidRequest) as caught:
        decode_warnings_request(request)
    assert (caught.value.field, caught.value.rule) == ("min_severity", "unknown_value")


def test_a_full_warnings_request_decodes() -> None:
    request = credit_risk_pb2.WarningsRequest(
        subject=common_pb2.Subject(resident_id=RESIDENT_ID),
        purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
        authorization_id="auth-2",
        request_id="req-2",
        min_severity=common_pb2.SEVERITY_HIGH,
    )
    assert decode_warnings_request(request) == ScoreQuery(
        subject=SubjectQuery(resident_id=RESIDENT_ID),
        purpose="post_loan_management",
        authorization_id="auth-2",
        request_id="req-2",
        min_severity=Severity.HIGH,
    )


def test_score_requests_never_carry_a_min_severity() -> None:
    request = credit_risk_pb2.ScoreRequest(purpose=common_pb2.PURPOSE_LOAN_APPROVAL)
    assert decode_score_request(request).min_severity is None
    assert decode_score_request(request).explain is False


def _answer(subject: SubjectDecision) -> ScoredDecision:
    return ScoredDecision(
        decision_id="01JDZ0000000000000000000AB",
        decided_at=datetime(2026, 11, 26, 9, 0, tzinfo=UTC),
        subject=subject,
        client="demo-lender",
        purpose="loan_approval",
        authorization_id="",
        request_id="r-1",
        warning_rules_version="w1",
    )


def _subject(score: int) -> SubjectDecision:
    return SubjectDecision(
        subject_type="entity",
        subject_key=USCC,
        features_as_of=date(2025, 12, 31),
        decision=Decision(0.02, score, "B", (), False, "m1"),
        warnings=(),
        features=np.zeros(3),
        explained=True,
    )


def test_the_encoder_answers_a_replaced_decision_anew_and_does_not_keep_the_old_one() -> None:
    encoder = ScoreResponseEncoder()
    old = _subject(610)
    first = credit_risk_pb2.ScoreResponse.FromString(encoder.encode(_answer(old), explain=False))
    assert (first.score, first.decision_id, first.request_id) == (
        610,
        "01JDZ0000000000000000000AB",
        "r-1",
    )
    # A refresh replaces the decision: the next answer is the new one...
    gone = weakref.ref(old)
    del old
    gc.collect()
    assert gone() is None  # ...and the encoder's cache did not keep the replaced one alive.
    new = _subject(655)
    second = credit_risk_pb2.ScoreResponse.FromString(encoder.encode(_answer(new), explain=False))
    assert second.score == 655
    again = credit_risk_pb2.ScoreResponse.FromString(encoder.encode(_answer(new), explain=False))
    assert again == second
