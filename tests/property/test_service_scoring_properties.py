"""Property tests of Scorer.subject_key (hypothesis): a rejected identifier is never echoed."""

from __future__ import annotations

import pytest
from conftest import TEST_SECRET, TODAY, HeldSubjects, make_resident_id, make_uscc
from hypothesis import given
from hypothesis import strategies as st

from records.pseudonym import Pseudonymiser
from service.idempotency import IdempotencyCache
from service.problems import InvalidRequest
from service.scoring import ScoredDecision, Scorer, SubjectQuery

SCORER = Scorer(
    HeldSubjects(),  # type: ignore[arg-type]  # holds nobody: every identifier is checked
    Pseudonymiser(TEST_SECRET),
    inquiries=None,
    idempotency=IdempotencyCache[ScoredDecision](0, 0),
)
ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@st.composite
def mutated(draw: st.DrawFn, valid: str) -> str:
    position = draw(st.integers(min_value=0, max_value=len(valid) - 1))
    replacement = draw(st.sampled_from(ALPHANUMERIC))
    return valid[:position] + replacement + valid[position + 1 :]


@given(st.integers(min_value=0, max_value=99_999_999).map(make_uscc).flatmap(mutated))
def test_a_rejected_uscc_is_not_in_the_message(uscc: str) -> None:
    try:
        kind, key, identifier = SCORER.subject_key(SubjectQuery(uscc=uscc), TODAY)
    except InvalidRequest as err:
        assert err.field == "subject.uscc"
        assert err.rule
        assert uscc not in err.message
        return
    assert (kind, key, identifier) == ("entity", uscc, uscc)


@given(st.integers(min_value=0, max_value=999).map(make_resident_id).flatmap(mutated))
def test_a_rejected_resident_id_is_not_in_the_message(resident_id: str) -> None:
    try:
        kind, key, identifier = SCORER.subject_key(SubjectQuery(resident_id=resident_id), TODAY)
    except InvalidRequest as err:
        assert err.field == "subject.resident_id"
        assert err.rule
        assert resident_id not in err.message
        assert resident_id[:17] not in err.message
        return
    assert kind == "person"
    assert identifier == resident_id
    assert len(key) == 64 and resident_id not in key


@given(st.text(max_size=40))
@pytest.mark.parametrize("field", ["uscc", "resident_id"])
def test_any_text_is_a_valid_subject_or_an_invalid_request(field: str, text: str) -> None:
    subject = SubjectQuery(**{field: text})
    try:
        SCORER.subject_key(subject, TODAY)
    except InvalidRequest as err:
        assert err.field == f"subject.{field}"
        assert err.rule
