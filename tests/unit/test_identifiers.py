"""Worked examples and one test per rule for records.identifiers."""

from __future__ import annotations

import pickle
from datetime import date

import pytest

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
from records.regions import DISTRICT_CODES, PROVINCE_CODES, is_province_code

# GB 32100 example (Fuzhou, org code M000100Y-4) and two public company registrations.
USCC_EXAMPLE = "91350100M000100Y43"
USCC_HUAWEI = "914403001922038216"  # Huawei Technologies Co., Ltd. (Shenzhen)
USCC_XIAOMI = "91110108551385082Q"  # Beijing Xiaomi Technology Co., Ltd. (Haidian)
# The worked example from GB 11643-1999 itself.
RID_EXAMPLE = "11010519491231002X"
TODAY = date(2025, 6, 30)


def rid(body17: str) -> str:
    """A resident id from a 17-digit body plus its computed check character."""
    return body17 + resident_id_check_character(body17)


def uscc(body16: str) -> str:
    """A USCC from positions 1-16 plus computed organisation and final check characters."""
    body17 = body16 + organisation_check_character(body16[8:16])
    return body17 + uscc_check_character(body17)


def rejected(validate: object, value: object, **kwargs: object) -> InvalidIdentifier:
    assert callable(validate)
    with pytest.raises(InvalidIdentifier) as info:
        validate(value, **kwargs)
    return info.value


# ------------------------------------------------------------------------------------------
# Regions
# ------------------------------------------------------------------------------------------


def test_province_codes_are_complete_and_two_digits() -> None:
    assert len(PROVINCE_CODES) == 34
    assert PROVINCE_CODES["33"] == "Zhejiang"
    assert all(len(c) == 2 and c.isdigit() for c in PROVINCE_CODES)
    assert is_province_code("33")
    assert not is_province_code("10")
    assert not is_province_code("3")


def test_district_codes_are_in_real_provinces_and_mostly_zhejiang() -> None:
    assert all(len(c) == 6 and c.isdigit() for c in DISTRICT_CODES)
    assert all(c[:2] in PROVINCE_CODES for c in DISTRICT_CODES)
    zhejiang = [c for c in DISTRICT_CODES if c.startswith("33")]
    assert len(zhejiang) > len(DISTRICT_CODES) / 2


# ------------------------------------------------------------------------------------------
# USCC worked examples
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [USCC_EXAMPLE, USCC_HUAWEI, USCC_XIAOMI])
def test_known_valid_usccs(code: str) -> None:
    validate_uscc(code)
    assert uscc_rejection(code) is None


def test_uscc_check_characters_of_the_example() -> None:
    # M=22, Y=34 (Latin positions): 22*3 + 1*5 + 34*2 = 139; 11 - 139 % 11 = 4
    assert organisation_check_character("M000100Y") == "4"
    assert uscc_check_character("91350100M000100Y4") == "3"


def test_organisation_check_special_results() -> None:
    # Sum ≡ 1 (mod 11) gives 10 -> "X"; sum ≡ 0 gives 11 -> "0".
    assert organisation_check_character("40000000") == "X"  # 4*3 = 12 ≡ 1 -> 10 -> "X"
    assert organisation_check_character("00000000") == "0"  # 0 -> 11 -> "0"
    assert organisation_check_character("00000300") == "9"  # 3*8 = 24 ≡ 2 -> 9
    # Letters are valued by Latin position (Z=35), not by USCC alphabet index.
    assert organisation_check_character("Z0000000") == "5"  # 35*3 = 105 ≡ 6 -> 5


def test_uscc_check_result_31_is_written_zero() -> None:
    # All-zero body sums to 0; 31 - 0 = 31 is written "0".
    assert uscc_check_character("0" * 17) == "0"


def test_constructed_usccs_validate() -> None:
    for district in ("330106", "330782", "440305", "110105"):
        code = uscc("91" + district + "MA2H3K7P")
        validate_uscc(code)
        assert uscc_rejection(code) is None


# ------------------------------------------------------------------------------------------
# USCC: one test per rule
# ------------------------------------------------------------------------------------------


def test_uscc_wrong_final_check_character() -> None:
    error = rejected(validate_uscc, USCC_EXAMPLE[:17] + "K")
    assert error.rule == "check_character"
    assert "check character (position 18) is 'K', expected '3'" in str(error)
    assert "check_character" in str(error)


def test_uscc_wrong_organisation_check_character() -> None:
    body17 = USCC_EXAMPLE[:16] + "5"
    error = rejected(validate_uscc, body17 + uscc_check_character(body17))
    assert error.rule == "organisation_check"
    assert "(position 17) is '5', expected '4'" in str(error)


def test_uscc_organisation_check_is_tested_before_final_check() -> None:
    # Both checks broken: the organisation code is reported.
    assert uscc_rejection(USCC_EXAMPLE[:16] + "5" + "K") == "organisation_check"


def test_uscc_unknown_province() -> None:
    error = rejected(validate_uscc, uscc("91990100M000100Y"))
    assert error.rule == "region"
    assert "province-level" in str(error)


def test_uscc_region_must_be_digits() -> None:
    error = rejected(validate_uscc, uscc("9133A100M000100Y"))
    assert error.rule == "region"
    assert "position 5 is 'A'" in str(error)


@pytest.mark.parametrize("code", [USCC_EXAMPLE[:17], USCC_EXAMPLE + "0", ""])
def test_uscc_length(code: str) -> None:
    error = rejected(validate_uscc, code)
    assert error.rule == "length"
    assert "exactly 18 characters" in str(error)


@pytest.mark.parametrize("letter", ["I", "O", "S", "V", "Z"])
def test_uscc_letters_outside_alphabet(letter: str) -> None:
    assert letter not in USCC_ALPHABET
    error = rejected(validate_uscc, USCC_EXAMPLE[:9] + letter + USCC_EXAMPLE[10:])
    assert error.rule == "charset"
    assert f"contains '{letter}' at position 10" in str(error)


def test_uscc_lowercase() -> None:
    error = rejected(validate_uscc, USCC_EXAMPLE.lower())
    assert error.rule == "lowercase"
    assert "contains lowercase letter 'm' at position 9; identifiers are upper-case" in str(error)


def test_uscc_fullwidth() -> None:
    error = rejected(validate_uscc, "９" + USCC_EXAMPLE[1:])
    assert error.rule == "fullwidth"
    assert "full-width character '９' at position 1" in str(error)


def test_uscc_trailing_newline() -> None:
    error = rejected(validate_uscc, USCC_EXAMPLE + "\n")
    assert error.rule == "whitespace"
    assert "whitespace (newline) at position 19" in str(error)


def test_uscc_hyphen() -> None:
    error = rejected(validate_uscc, USCC_EXAMPLE[:8] + "-" + USCC_EXAMPLE[8:])
    assert error.rule == "charset"
    assert "hyphen '-' at position 9" in str(error)


@pytest.mark.parametrize("value", [None, 91350100, b"91350100M000100Y43", ["9"]])
def test_uscc_non_str(value: object) -> None:
    error = rejected(validate_uscc, value)
    assert error.rule == "type"
    assert uscc_rejection(value) == "type"  # type: ignore[arg-type]


def test_uscc_check_character_helpers_reject_bad_bodies() -> None:
    assert rejected(uscc_check_character, "91350100M000100Y").rule == "length"
    assert rejected(uscc_check_character, "91350100M000100YO").rule == "charset"
    assert rejected(organisation_check_character, "M000100").rule == "length"
    assert rejected(organisation_check_character, "m000100Y").rule == "lowercase"


# ------------------------------------------------------------------------------------------
# Resident identity number worked examples
# ------------------------------------------------------------------------------------------


def test_known_valid_resident_id() -> None:
    validate_resident_id(RID_EXAMPLE)
    assert resident_id_rejection(RID_EXAMPLE) is None
    assert resident_id_check_character(RID_EXAMPLE[:17]) == "X"


@pytest.mark.parametrize(
    ("body", "check"),
    [
        # Sums worked by hand with weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2.
        ("33010619900101001", "8"),  # sum 158 -> remainder 4 -> "8"
        ("00000000000000000", "1"),  # sum 0 -> remainder 0 -> "1"
    ],
)
def test_resident_id_check_character_table(body: str, check: str) -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    remainder = sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11
    assert "10X98765432"[remainder] == check
    assert resident_id_check_character(body) == check


def test_constructed_resident_ids_validate() -> None:
    for body in ("33010619900101001", "44030520000229123", "33078219000101456"):
        number = rid(body)
        validate_resident_id(number, today=TODAY)
        assert resident_id_rejection(number, today=TODAY) is None


def test_birth_date_and_gender_helpers() -> None:
    assert resident_id_birth_date(RID_EXAMPLE) == date(1949, 12, 31)
    assert resident_id_gender(RID_EXAMPLE) == "female"  # 17th digit 2
    male = rid("33010619900101001")
    assert resident_id_birth_date(male) == date(1990, 1, 1)
    assert resident_id_gender(male) == "male"
    with pytest.raises(InvalidIdentifier):
        resident_id_gender(RID_EXAMPLE[:17] + "1")
    with pytest.raises(InvalidIdentifier):
        resident_id_birth_date(RID_EXAMPLE[:17] + "1")


# ------------------------------------------------------------------------------------------
# Resident identity number: one test per rule
# ------------------------------------------------------------------------------------------


def test_resident_id_wrong_check_character() -> None:
    error = rejected(validate_resident_id, RID_EXAMPLE[:17] + "5")
    assert error.rule == "check_character"
    assert "check character (position 18) is '5', expected 'X'" in str(error)


def test_resident_id_lowercase_x() -> None:
    error = rejected(validate_resident_id, RID_EXAMPLE.lower())
    assert error.rule == "lowercase"
    assert "lowercase letter 'x' at position 18; identifiers are upper-case" in str(error)


def test_resident_id_x_before_position_18() -> None:
    error = rejected(validate_resident_id, "X" + RID_EXAMPLE[1:])
    assert error.rule == "charset"
    assert "'X' at position 1" in str(error)


def test_resident_id_first_generation() -> None:
    error = rejected(validate_resident_id, "110105491231002")
    assert error.rule == "first_generation"
    assert "first-generation 15-digit numbers are not accepted" in str(error)


@pytest.mark.parametrize("number", [RID_EXAMPLE[:17], RID_EXAMPLE + "1", "11010549123100X"])
def test_resident_id_length(number: str) -> None:
    error = rejected(validate_resident_id, number)
    assert error.rule == "length"
    assert "exactly 18 characters" in str(error)


def test_resident_id_unknown_province() -> None:
    error = rejected(validate_resident_id, rid("10010519491231002"))
    assert error.rule == "region"
    assert "province-level" in str(error)


def test_resident_id_future_birth_date() -> None:
    number = rid("33010620250701001")  # born the day after TODAY
    error = rejected(validate_resident_id, number, today=TODAY)
    assert error.rule == "birth_date"
    assert "in the future (after 2025-06-30)" in str(error)
    assert resident_id_rejection(number, today=date(2025, 7, 1)) is None


def test_resident_id_born_today_is_accepted() -> None:
    assert resident_id_rejection(rid("33010620250630001"), today=TODAY) is None


def test_resident_id_default_today_rejects_far_future() -> None:
    assert resident_id_rejection(rid("33010629991231001")) == "birth_date"


def test_resident_id_1899_birth_date() -> None:
    error = rejected(validate_resident_id, rid("33010618991231001"), today=TODAY)
    assert error.rule == "birth_date"
    assert "before 1900-01-01" in str(error)
    assert resident_id_rejection(rid("33010619000101001"), today=TODAY) is None


@pytest.mark.parametrize(
    ("yyyymmdd", "valid"),
    [
        ("20000229", True),  # divisible by 400
        ("20040229", True),
        ("20030229", False),
        ("19000229", False),  # divisible by 100, not 400
        ("19960230", False),
        ("19960431", False),
        ("19961301", False),
        ("19960001", False),
        ("19960100", False),
    ],
)
def test_resident_id_calendar_dates(yyyymmdd: str, valid: bool) -> None:
    number = rid("330106" + yyyymmdd + "001")
    rule = resident_id_rejection(number, today=TODAY)
    if valid:
        assert rule is None
    else:
        assert rule == "birth_date"
        assert "not a real calendar date" in str(
            rejected(validate_resident_id, number, today=TODAY)
        )


def test_resident_id_fullwidth_digit() -> None:
    error = rejected(validate_resident_id, "１" + RID_EXAMPLE[1:])
    assert error.rule == "fullwidth"
    assert "full-width character '１' at position 1" in str(error)


def test_resident_id_embedded_space() -> None:
    error = rejected(validate_resident_id, RID_EXAMPLE[:6] + " " + RID_EXAMPLE[6:])
    assert error.rule == "whitespace"
    assert "whitespace (space) at position 7" in str(error)


def test_resident_id_tab() -> None:
    error = rejected(validate_resident_id, "\t" + RID_EXAMPLE)
    assert error.rule == "whitespace"
    assert "whitespace (tab) at position 1" in str(error)


def test_resident_id_hyphen() -> None:
    error = rejected(validate_resident_id, RID_EXAMPLE[:6] + "-" + RID_EXAMPLE[6:])
    assert error.rule == "charset"
    assert "hyphen '-' at position 7" in str(error)


def test_resident_id_trailing_newline() -> None:
    error = rejected(validate_resident_id, RID_EXAMPLE + "\n")
    assert error.rule == "whitespace"
    assert "whitespace (newline) at position 19" in str(error)


@pytest.mark.parametrize("value", [None, 11010519491231002, b"11010519491231002X"])
def test_resident_id_non_str(value: object) -> None:
    error = rejected(validate_resident_id, value)
    assert error.rule == "type"
    assert "expected str" in str(error)
    assert resident_id_rejection(value) == "type"  # type: ignore[arg-type]


def test_resident_id_check_character_helper_rejects_bad_bodies() -> None:
    assert rejected(resident_id_check_character, RID_EXAMPLE[:16]).rule == "length"
    assert rejected(resident_id_check_character, RID_EXAMPLE[:16] + "X").rule == "charset"


# ------------------------------------------------------------------------------------------
# Privacy and exception plumbing
# ------------------------------------------------------------------------------------------

_BAD_RESIDENT_IDS = [
    RID_EXAMPLE[:17] + "5",
    RID_EXAMPLE.lower(),
    RID_EXAMPLE + "\n",
    " " + RID_EXAMPLE,
    RID_EXAMPLE[:17],
    RID_EXAMPLE[:6] + RID_EXAMPLE[8:17],
    rid("99010519491231002"),
    rid("11010518991231002"),
    rid("11010519490231002"),
    rid("11010529991231002"),
]


@pytest.mark.parametrize("number", _BAD_RESIDENT_IDS)
def test_resident_id_message_never_contains_the_number(number: str) -> None:
    message = str(rejected(validate_resident_id, number, today=TODAY))
    stripped = number.strip().lower().upper()
    assert number not in message
    assert stripped not in message
    assert stripped[:17] not in message
    assert stripped[6:14] not in message  # nor the birth date


@pytest.mark.parametrize(
    "code",
    [USCC_EXAMPLE[:17] + "K", USCC_EXAMPLE.lower(), USCC_EXAMPLE + "\n", USCC_EXAMPLE[:17]],
)
def test_uscc_message_never_contains_the_code(code: str) -> None:
    message = str(rejected(validate_uscc, code))
    assert code not in message
    assert code.strip().upper()[:17] not in message


def test_invalid_identifier_is_a_value_error_and_pickles() -> None:
    error = rejected(validate_uscc, USCC_EXAMPLE[:17] + "K")
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, InvalidIdentifier)
    assert clone.rule == error.rule
    assert str(clone) == str(error)
