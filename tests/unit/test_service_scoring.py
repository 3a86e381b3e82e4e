"""service.scoring.Scorer: the request checks (subject, purpose, references, consent).

Only the checks are tested here; their only use of the decision book is a lookup (see the
integration tests for whole calls)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest
from conftest import TEST_SECRET, TODAY, HeldSubjects, make_resident_id, make_uscc

from records.pseudonym import Pseudonymiser
from service.idempotency import IdempotencyCache
from service.problems import ConsentRequired, InvalidRequest
from service.scoring import MAX_REFERENCE_LENGTH, ScoredDecision, ScoreQuery, Scorer, SubjectQuery

USCC = make_uscc(4711)
RESIDENT_ID = make_resident_id(123)


def scorer_with(book: HeldSubjects) -> Scorer:
    return Scorer(
        book,  # type: ignore[arg-type]
        Pseudonymiser(TEST_SECRET),
        inquiries=None,
        idempotency=IdempotencyCache[ScoredDecision](0, 0),
    )


@pytest.fixture
def scorer() -> Scorer:
    return scorer_with(HeldSubjects())


def with_check_character(identifier: str, replacement: str) -> str:
    assert identifier[-1] != replacement
    return identifier[:-1] + replacement


def wrong_check(identifier: str, alphabet: str) -> str:
    return with_check_character(identifier, next(c for c in alphabet if c != identifier[-1]))


def query(purpose: str | None = "loan_approval", **fields: str) -> ScoreQuery:
    return ScoreQuery(subject=SubjectQuery(uscc=USCC), purpose=purpose, **fields)


# -- subject_key ---------------------------------------------------------------------------


def test_a_valid_uscc_is_an_entity_keyed_by_itself(scorer: Scorer) -> None:
    assert scorer.subject_key(SubjectQuery(uscc=USCC), TODAY) == ("entity", USCC, USCC)


def test_an_entity_the_book_holds_is_keyed_by_its_code() -> None:
    held = scorer_with(HeldSubjects({USCC: "entity"}))
    assert held.subject_key(SubjectQuery(uscc=USCC), TODAY) == ("entity", USCC, USCC)


def test_a_person_s_pseudonym_sent_as_a_code_is_not_taken_for_an_entity() -> None:
    pseudonym = Pseudonymiser(TEST_SECRET).person_key(RESIDENT_ID)
    held = scorer_with(HeldSubjects({pseudonym: "person"}))
    with pytest.raises(InvalidRequest) as caught:
        held.subject_key(SubjectQuery(uscc=pseudonym), TODAY)
    assert caught.value.field == "subject.uscc"


def test_a_valid_resident_id_is_a_person_keyed_by_its_pseudonym(scorer: Scorer) -> None:
    kind, key, identifier = scorer.subject_key(SubjectQuery(resident_id=RESIDENT_ID), TODAY)
    assert kind == "person"
    assert identifier == RESIDENT_ID
    assert key == hmac.new(TEST_SECRET, RESIDENT_ID.encode(), hashlib.sha256).hexdigest()
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")
    assert RESIDENT_ID not in key


def test_the_pseudonym_depends_on_the_secret(scorer: Scorer) -> None:
    other = Scorer(
        None,  # type: ignore[arg-type]
        Pseudonymiser(b"another-secret-of-at-least-32-bytes!!"),
        inquiries=None,
        idempotency=IdempotencyCache[ScoredDecision](0, 0),
    )
    subject = SubjectQuery(resident_id=RESIDENT_ID)
    assert scorer.subject_key(subject, TODAY)[1] != other.subject_key(subject, TODAY)[1]
    assert scorer.subject_key(subject, TODAY) == scorer.subject_key(subject, TODAY)


@pytest.mark.parametrize(
    "subject",
    [SubjectQuery(), SubjectQuery(uscc=USCC, resident_id=RESIDENT_ID)],
    ids=["neither", "both"],
)
def test_exactly_one_identifier_is_required(scorer: Scorer, subject: SubjectQuery) -> None:
    with pytest.raises(InvalidRequest) as caught:
        scorer.subject_key(subject, TODAY)
    assert caught.value.field == "subject"
    assert RESIDENT_ID not in caught.value.message and USCC not in caught.value.message


def test_a_uscc_with_a_wrong_check_character_is_invalid(scorer: Scorer) -> None:
    bad = wrong_check(USCC, "0123456789ABCDEFGHJKLMNPQRTUWXY")
    with pytest.raises(InvalidRequest) as caught:
        scorer.subject_key(SubjectQuery(uscc=bad), TODAY)
    assert caught.value.field == "subject.uscc"
    assert caught.value.rule == "check_character"
    assert caught.value.message.startswith("subject.uscc")
    assert bad not in caught.value.message
    assert bad[:17] not in caught.value.message


def test_a_resident_id_with_a_wrong_check_character_is_invalid(scorer: Scorer) -> None:
    bad = wrong_check(RESIDENT_ID, "0123456789X")
    with pytest.raises(InvalidRequest) as caught:
        scorer.subject_key(SubjectQuery(resident_id=bad), TODAY)
    assert caught.value.field == "subject.resident_id"
    assert caught.value.rule == "check_character"
    assert caught.value.message.startswith("subject.resident_id")
    assert bad not in caught.value.message
    assert bad[:17] not in caught.value.message


@pytest.mark.parametrize(
    ("subject", "field", "rule"),
    [
        (SubjectQuery(uscc=""), "subject.uscc", "length"),
        (SubjectQuery(uscc=USCC[:-1]), "subject.uscc", "length"),
        (SubjectQuery(resident_id=""), "subject.resident_id", "length"),
        (SubjectQuery(resident_id=RESIDENT_ID + "1"), "subject.resident_id", "length"),
        (
            SubjectQuery(resident_id=make_resident_id(5, birth="19850230")),
            "subject.resident_id",
            "birth_date",
        ),
    ],
)
def test_other_broken_rules_name_the_field_and_rule(
    scorer: Scorer, subject: SubjectQuery, field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        scorer.subject_key(subject, TODAY)
    assert (caught.value.field, caught.value.rule) == (field, rule)
    identifier = subject.uscc or subject.resident_id
    if identifier:
        assert identifier not in caught.value.message


def test_a_birth_date_after_today_is_invalid(scorer: Scorer) -> None:
    born_later = make_resident_id(9, birth="20261127")
    with pytest.raises(InvalidRequest) as caught:
        scorer.subject_key(SubjectQuery(resident_id=born_later), date(2026, 11, 26))
    assert caught.value.field == "subject.resident_id"
    assert born_later not in caught.value.message
    kind, _, _ = scorer.subject_key(SubjectQuery(resident_id=born_later), date(2026, 11, 27))
    assert kind == "person"


# -- _check ------------------------------------------------------------------------------


def test_a_complete_entity_query_passes_and_gives_its_purpose(scorer: Scorer) -> None:
    assert scorer._check(query("guarantee_review"), "entity") == "guarantee_review"


def test_an_entity_needs_no_authorization(scorer: Scorer) -> None:
    assert scorer._check(query(authorization_id=""), "entity") == "loan_approval"


def test_purpose_is_required(scorer: Scorer) -> None:
    with pytest.raises(InvalidRequest) as caught:
        scorer._check(query(purpose=None), "entity")
    assert (caught.value.field, caught.value.rule) == ("purpose", "required")


def test_a_person_without_authorization_needs_consent(scorer: Scorer) -> None:
    with pytest.raises(ConsentRequired) as caught:
        scorer._check(query(authorization_id=""), "person")
    assert caught.value.field == "authorization_id"


def test_a_person_with_authorization_passes(scorer: Scorer) -> None:
    assert scorer._check(query(authorization_id="consent-2026-001"), "person") == "loan_approval"


@pytest.mark.parametrize("field", ["request_id", "authorization_id"])
def test_references_up_to_the_limit_pass(scorer: Scorer, field: str) -> None:
    assert MAX_REFERENCE_LENGTH == 128
    fields = {"authorization_id": "auth", field: "r" * 128}
    assert scorer._check(query(**fields), "person") == "loan_approval"


@pytest.mark.parametrize("field", ["request_id", "authorization_id"])
def test_references_over_the_limit_are_invalid(scorer: Scorer, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        scorer._check(query(**{"authorization_id": "auth", field: "r" * 129}), "person")
    assert caught.value.field == field
    assert caught.value.rule == "too_long"


@pytest.mark.parametrize(
    "control", ["\x00", "\n", "\r", "\t", "\x1b", "\x1f", "\x7f", "\x85", "\u2028"]
)
@pytest.mark.parametrize("field", ["request_id", "authorization_id"])
def test_references_with_a_control_character_are_invalid(
    scorer: Scorer, field: str, control: str
) -> None:
    fields = {"authorization_id": "auth", field: f"ref{control}x"}
    with pytest.raises(InvalidRequest) as caught:
        scorer._check(query(**fields), "entity")
    assert caught.value.field == field
    assert caught.value.rule == "control_character"
    assert control not in caught.value.message


@pytest.mark.parametrize("value", ["req-2026-11-26/001", "Zahlung ü", "请求 42", "a b"])
def test_printable_references_pass(scorer: Scorer, value: str) -> None:
    assert scorer._check(query(request_id=value, authorization_id=value), "person")


def test_a_bad_request_id_is_reported_before_missing_consent(scorer: Scorer) -> None:
    with pytest.raises(InvalidRequest) as caught:
        scorer._check(query(request_id="x" * 200, authorization_id=""), "person")
    assert caught.value.field == "request_id"


def test_unknown_non_inquiry_purposes_are_refused() -> None:
    with pytest.raises(ValueError, match="non-inquiry"):
        Scorer(
            None,  # type: ignore[arg-type]
            Pseudonymiser(TEST_SECRET),
            inquiries=None,
            idempotency=IdempotencyCache[ScoredDecision](0, 0),
            non_inquiry_purposes=("marketing",),
        )
