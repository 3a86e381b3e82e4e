"""Property-based tests for records.identifiers (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import assume, given
from hypothesis import strategies as st

from records.identifiers import (
    USCC_ALPHABET,
    InvalidIdentifier,
    organisation_check_character,
    resident_id_birth_date,
    resident_id_check_character,
    resident_id_gender,
    resident_id_rejection,
    uscc_check_character,
    uscc_rejection,
    validate_resident_id,
    validate_uscc,
)
from records.regions import DISTRICT_CODES, PROVINCE_CODES

TODAY = date(2025, 6, 30)
RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
DIGITS = "0123456789"


# ------------------------------------------------------------------------------------------
# Reference implementations, written straight from the standards' formulas
# ------------------------------------------------------------------------------------------


def reference_resident_check(body17: str) -> str:
    # ISO 7064 MOD 11-2: weight of position i (1-based) is 2^(18-i) mod 11.
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(body17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def reference_organisation_check(body8: str) -> str:
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c, 36) * w for c, w in zip(body8, weights, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def reference_uscc_check(body17: str) -> str:
    total = sum(USCC_ALPHABET.index(c) * 3**i for i, c in enumerate(body17))
    value = 31 - total % 31
    return "0" if value == 31 else USCC_ALPHABET[value]


# ------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------

region_codes = st.one_of(
    st.sampled_from(sorted(DISTRICT_CODES)),
    st.builds(
        str.__add__,
        st.sampled_from(sorted(PROVINCE_CODES)),
        st.text(DIGITS, min_size=4, max_size=4),
    ),
)
birth_dates = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)


@st.composite
def valid_resident_ids(draw: st.DrawFn) -> str:
    born = draw(birth_dates)
    body = (
        draw(region_codes) + born.strftime("%Y%m%d") + draw(st.text(DIGITS, min_size=3, max_size=3))
    )
    return body + resident_id_check_character(body)


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    head = draw(st.text(USCC_ALPHABET, min_size=2, max_size=2))
    org_body = draw(st.text(USCC_ALPHABET, min_size=8, max_size=8))
    body17 = head + draw(region_codes) + org_body + organisation_check_character(org_body)
    return body17 + uscc_check_character(body17)


# Other characters: anything at all, plus the usual suspects for dirty input.
other_characters = st.one_of(
    st.characters(),
    st.sampled_from(list(" \t\n\r-xabcIOSVZ０１９Ｘ\u3000\xa0")),
)


def substitute(value: str, position: int, character: str) -> str:
    return value[:position] + character + value[position + 1 :]


# ------------------------------------------------------------------------------------------
# Valid bodies with computed check characters pass
# ------------------------------------------------------------------------------------------


@given(valid_resident_ids())
def test_constructed_resident_ids_are_valid(number: str) -> None:
    validate_resident_id(number, today=TODAY)
    assert resident_id_rejection(number, today=TODAY) is None
    assert number[17] == reference_resident_check(number[:17])
    born = resident_id_birth_date(number)
    assert born.strftime("%Y%m%d") == number[6:14]
    assert resident_id_gender(number) == ("male" if int(number[16]) % 2 else "female")


@given(valid_usccs())
def test_constructed_usccs_are_valid(code: str) -> None:
    validate_uscc(code)
    assert uscc_rejection(code) is None
    assert code[16] == reference_organisation_check(code[8:16])
    assert code[17] == reference_uscc_check(code[:17])


@given(st.text(DIGITS, min_size=17, max_size=17))
def test_resident_check_character_matches_reference(body: str) -> None:
    assert resident_id_check_character(body) == reference_resident_check(body)


@given(st.text(USCC_ALPHABET, min_size=17, max_size=17))
def test_uscc_check_character_matches_reference(body: str) -> None:
    assert uscc_check_character(body) == reference_uscc_check(body)


@given(st.text(DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=8, max_size=8))
def test_organisation_check_character_matches_reference(body: str) -> None:
    assert organisation_check_character(body) == reference_organisation_check(body)


# ------------------------------------------------------------------------------------------
# Any single-character substitution is caught
# ------------------------------------------------------------------------------------------


@given(valid_resident_ids(), st.integers(0, 17), st.sampled_from(DIGITS + "X"))
def test_resident_id_substitution_within_alphabet_fails(
    number: str, position: int, character: str
) -> None:
    assume(number[position] != character)
    assert resident_id_rejection(substitute(number, position, character), today=TODAY)


@given(valid_resident_ids(), st.integers(0, 17), other_characters)
def test_resident_id_substitution_with_any_character_fails(
    number: str, position: int, character: str
) -> None:
    assume(number[position] != character)
    assert resident_id_rejection(substitute(number, position, character), today=TODAY)


@given(valid_usccs(), st.integers(0, 17), st.sampled_from(USCC_ALPHABET))
def test_uscc_substitution_within_alphabet_fails(code: str, position: int, character: str) -> None:
    assume(code[position] != character)
    assert uscc_rejection(substitute(code, position, character))


@given(valid_usccs(), st.integers(0, 17), other_characters)
def test_uscc_substitution_with_any_character_fails(
    code: str, position: int, character: str
) -> None:
    assume(code[position] != character)
    assert uscc_rejection(substitute(code, position, character))


# ------------------------------------------------------------------------------------------
# *_rejection agrees with the validators; messages never leak the input
# ------------------------------------------------------------------------------------------


def _mutated(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid values, with one character substituted, inserted or deleted, or truncated."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        value = draw(valid)
        position = draw(st.integers(0, len(value)))
        character = draw(other_characters | st.sampled_from(USCC_ALPHABET))
        operation = draw(st.sampled_from(["keep", "substitute", "insert", "delete", "cut"]))
        if operation == "substitute" and position < len(value):
            return substitute(value, position, character)
        if operation == "insert":
            return value[:position] + character + value[position:]
        if operation == "delete":
            return value[:position] + value[position + 1 :]
        if operation == "cut":
            return value[:position]
        return value

    return build()


resident_id_inputs = st.one_of(
    _mutated(valid_resident_ids()),
    st.text(DIGITS + "X", max_size=20),
    st.text(max_size=20),
)
uscc_inputs = st.one_of(
    _mutated(valid_usccs()),
    st.text(USCC_ALPHABET, max_size=20),
    st.text(max_size=20),
)


@given(resident_id_inputs, st.sampled_from([TODAY, date(1990, 1, 1), None]))
def test_resident_id_rejection_agrees_with_validator(number: str, today: date | None) -> None:
    rule = resident_id_rejection(number, today=today)
    try:
        validate_resident_id(number, today=today)
    except InvalidIdentifier as error:
        assert rule == error.rule
        message = str(error)
        assert f"[{error.rule}]" in message
        if len(number.strip()) >= 6:
            assert number not in message
            assert number.strip() not in message
    else:
        assert rule is None


@given(uscc_inputs)
def test_uscc_rejection_agrees_with_validator(code: str) -> None:
    rule = uscc_rejection(code)
    try:
        validate_uscc(code)
    except InvalidIdentifier as error:
        assert rule == error.rule
        message = str(error)
        assert f"[{error.rule}]" in message
        if len(code.strip()) >= 6:
            assert code not in message
            assert code.strip() not in message
    else:
        assert rule is None


@given(valid_resident_ids(), st.integers(1, 3650))
def test_resident_id_born_after_today_is_rejected(number: str, days: int) -> None:
    born = resident_id_birth_date(number)
    assert resident_id_rejection(number, today=born) is None
    assert resident_id_rejection(number, today=born - timedelta(days=days)) == "birth_date"
