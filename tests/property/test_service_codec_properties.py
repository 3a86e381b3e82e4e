"""Property tests of service.codec (hypothesis): decoding never fails but as InvalidRequest."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from creditrisk.v1 import common_pb2, credit_risk_pb2
from service.codec import decode_score_request, decode_warnings_request
from service.problems import InvalidRequest
from service.scoring import ScoreQuery

KNOWN_PURPOSES = {v.number for v in common_pb2.Purpose.DESCRIPTOR.values}
KNOWN_SEVERITIES = {v.number for v in common_pb2.Severity.DESCRIPTOR.values}

# Protobuf strings are UTF-8: lone surrogates cannot be set at all.
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)))
SHORT_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
SUBJECTS = st.one_of(
    st.builds(common_pb2.Subject, uscc=TEXT),
    st.builds(common_pb2.Subject, resident_id=TEXT),
    st.just(common_pb2.Subject()),
    st.none(),
)


def _score_request(
    subject: common_pb2.Subject | None,
    purpose: int,
    authorization_id: str,
    request_id: str,
    explain: bool,
) -> credit_risk_pb2.ScoreRequest:
    request = credit_risk_pb2.ScoreRequest(
        authorization_id=authorization_id, request_id=request_id, explain=explain
    )
    if subject is not None:
        request.subject.CopyFrom(subject)
    request.purpose = purpose  # type: ignore[assignment]
    return request


@given(SUBJECTS, INT32, SHORT_TEXT, SHORT_TEXT, st.booleans())
def test_decode_score_request_returns_a_query_or_raises_invalid_request(
    subject: common_pb2.Subject | None,
    purpose: int,
    authorization_id: str,
    request_id: str,
    explain: bool,
) -> None:
    request = _score_request(subject, purpose, authorization_id, request_id, explain)
    try:
        query = decode_score_request(request)
    except InvalidRequest as err:
        assert purpose not in KNOWN_PURPOSES
        assert (err.field, err.rule) == ("purpose", "unknown_value")
        return
    assert isinstance(query, ScoreQuery)
    assert purpose in KNOWN_PURPOSES
    assert (query.purpose is None) == (purpose == 0)
    assert query.request_id == request_id
    assert query.authorization_id == authorization_id
    assert query.explain is explain
    which = request.subject.WhichOneof("id")
    assert query.subject.uscc == (request.subject.uscc if which == "uscc" else None)
    assert query.subject.resident_id == (
        request.subject.resident_id if which == "resident_id" else None
    )


@given(SUBJECTS, INT32, INT32, SHORT_TEXT, SHORT_TEXT)
def test_decode_warnings_request_returns_a_query_or_raises_invalid_request(
    subject: common_pb2.Subject | None,
    purpose: int,
    min_severity: int,
    authorization_id: str,
    request_id: str,
) -> None:
    request = credit_risk_pb2.WarningsRequest(
        authorization_id=authorization_id, request_id=request_id
    )
    if subject is not None:
        request.subject.CopyFrom(subject)
    request.purpose = purpose  # type: ignore[assignment]
    request.min_severity = min_severity  # type: ignore[assignment]
    try:
        query = decode_warnings_request(request)
    except InvalidRequest as err:
        assert err.field in {"purpose", "min_severity"}
        assert err.rule == "unknown_value"
        assert purpose not in KNOWN_PURPOSES or min_severity not in KNOWN_SEVERITIES
        return
    assert isinstance(query, ScoreQuery)
    assert purpose in KNOWN_PURPOSES and min_severity in KNOWN_SEVERITIES
    assert (query.min_severity is None) == (min_severity == 0)
