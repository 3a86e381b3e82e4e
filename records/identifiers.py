"""Strict validators for Chinese organisation and personal identifiers.

* Unified Social Credit Code (USCC), GB 32100-2015, which embeds a GB 11714 organisation code.
* Resident identity card number (second generation), GB 11643-1999, ISO 7064 MOD 11-2.

The validators never normalise or guess: lowercase letters, full-width characters, whitespace
(including trailing newlines), hyphens and anything else outside the allowed alphabet are
errors.  They are written for bulk use (millions of unique values during ingestion), so the
happy path avoids regular expressions and per-character Python branching.

Privacy: an :class:`InvalidIdentifier` message never contains the input, only the rule broken
and at most one offending character with its (1-based) position, so it is safe to log.
"""

from __future__ import annotations

from datetime import date
from operator import mul
from typing import Final, Literal

from records.regions import PROVINCE_CODES

__all__ = [
    "USCC_ALPHABET",
    "InvalidIdentifier",
    "organisation_check_character",
    "resident_id_birth_date",
    "resident_id_check_character",
    "resident_id_gender",
    "resident_id_rejection",
    "uscc_check_character",
    "uscc_rejection",
    "validate_resident_id",
    "validate_uscc",
]


class InvalidIdentifier(ValueError):  # noqa: N818 - public name fixed by the API
    """An identifier broke a rule; ``rule`` is a short stable code such as ``"region"``.

    Rule codes: ``type``, ``whitespace``, ``fullwidth``, ``lowercase``, ``charset``,
    ``length``, ``first_generation``, ``region``, ``birth_date``, ``organisation_check``,
    ``check_character``.
    """

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only ``rule`` would otherwise break pickling (e.g. multiprocessing workers).
        return (_rebuild_invalid_identifier, (str(self), self.rule))


def _rebuild_invalid_identifier(message: str, rule: str) -> InvalidIdentifier:
    return InvalidIdentifier(message, rule=rule)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE: Final[dict[str, int]] = {c: i for i, c in enumerate(USCC_ALPHABET)}
# W_i = 3^(i-1) mod 31: 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28
_USCC_WEIGHTS: Final[tuple[int, ...]] = tuple(pow(3, i, 31) for i in range(17))

_UPPER_LATIN: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# GB 11714: digits are worth 0-9, letters their position in the Latin alphabet (A=10 ... Z=35).
_ORG_VALUE: Final[dict[str, int]] = {
    **{str(d): d for d in range(10)},
    **{c: 10 + i for i, c in enumerate(_UPPER_LATIN)},
}
_ORG_WEIGHTS: Final[tuple[int, ...]] = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_CHECK: Final = "0123456789X"  # indexed by (-sum) mod 11: 11 -> "0", 10 -> "X"

_RID_WEIGHTS: Final[tuple[int, ...]] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK: Final = "10X98765432"  # indexed by sum mod 11
# The fast path sums ASCII code points; subtract the contribution of ord("0") == 48.
_RID_ASCII_OFFSET: Final = 48 * sum(_RID_WEIGHTS)
_RID_ALLOWED: Final[frozenset[str]] = frozenset("0123456789X")

_DIGITS: Final[frozenset[str]] = frozenset("0123456789")
_PROVINCES: Final[frozenset[str]] = frozenset(PROVINCE_CODES)
_DAYS_IN_MONTH: Final[tuple[int, ...]] = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EARLIEST_BIRTH: Final = 19000101  # YYYYMMDD as an int

_WHITESPACE_NAMES: Final[dict[str, str]] = {
    " ": "space",
    "\t": "tab",
    "\n": "newline",
    "\r": "carriage return",
    "\u3000": "ideographic space",
    "\xa0": "no-break space",
}
_HYPHENS: Final[frozenset[str]] = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63")

_USCC: Final = "USCC"
_RID: Final = "resident identity number"

# A problem is (rule, message without the "invalid X [rule]:" prefix).
_Problem = tuple[str, str]


# --------------------------------------------------------------------------------------------
# Shared helpers (only reached on the failure path)
# --------------------------------------------------------------------------------------------


def _error(kind: str, problem: _Problem) -> InvalidIdentifier:
    rule, detail = problem
    return InvalidIdentifier(f"invalid {kind} [{rule}]: {detail}", rule=rule)


def _describe_character(ch: str, pos: int, charset_hint: str) -> _Problem:
    """Classify one character that is outside the allowed alphabet."""
    if ch.isspace():
        name = _WHITESPACE_NAMES.get(ch, f"U+{ord(ch):04X}")
        return "whitespace", (
            f"contains whitespace ({name}) at position {pos}; "
            "identifiers contain no spaces, tabs or line breaks"
        )
    if "\uff01" <= ch <= "\uff5e":
        ascii_equivalent = chr(ord(ch) - 0xFEE0)
        return "fullwidth", (
            f"contains full-width character {ch!r} at position {pos}; "
            f"only ASCII characters are allowed (did you mean {ascii_equivalent!r}?)"
        )
    if "a" <= ch <= "z":
        return "lowercase", (
            f"contains lowercase letter {ch!r} at position {pos}; identifiers are upper-case"
        )
    if ch in _HYPHENS:
        return "charset", (
            f"contains hyphen {ch!r} at position {pos}; identifiers contain no separators"
        )
    return "charset", f"contains {ch!r} at position {pos}; {charset_hint}"


def _first_bad_character(
    text: str, allowed: frozenset[str] | dict[str, int], charset_hint: str
) -> _Problem | None:
    for pos, ch in enumerate(text, 1):
        if ch not in allowed:
            return _describe_character(ch, pos, charset_hint)
    return None


def _type_problem(value: object) -> _Problem:
    return "type", f"expected str, got {type(value).__name__}"


def _length_problem(expected: int, found: int, what: str = "characters") -> _Problem:
    return "length", f"must be exactly {expected} {what}, got {found}"


_USCC_CHARSET_HINT: Final = (
    "only digits and the upper-case letters other than I, O, S, V and Z are allowed"
)
_RID_CHARSET_HINT: Final = "only digits 0-9 (and 'X' as the check character) are allowed"


# --------------------------------------------------------------------------------------------
# USCC (GB 32100-2015) and organisation code (GB 11714)
# --------------------------------------------------------------------------------------------


def _organisation_check(body8: str) -> str:
    """GB 11714 check character for 8 characters already known to be in ``_ORG_VALUE``."""
    return _ORG_CHECK[-sum(map(mul, map(_ORG_VALUE.__getitem__, body8), _ORG_WEIGHTS)) % 11]


def _uscc_problem(code: object) -> _Problem | None:
    if not isinstance(code, str):
        return _type_problem(code)
    try:
        values = list(map(_USCC_VALUE.__getitem__, code))
    except KeyError:
        problem = _first_bad_character(code, _USCC_VALUE, _USCC_CHARSET_HINT)
        assert problem is not None
        return problem
    if len(values) != 18:
        return _length_problem(18, len(values))
    # Positions 3-8: administrative division code, all digits, real province.
    for pos in range(2, 8):
        if values[pos] > 9:
            return "region", (
                f"position {pos + 1} is {code[pos]!r}; positions 3-8 "
                "(administrative division code) must be digits"
            )
    if code[2:4] not in _PROVINCES:
        return "region", (
            "positions 3-4 are not a real province-level administrative division code"
        )
    # Positions 9-17: GB 11714 organisation code with its own check character.
    expected_org = _organisation_check(code[8:16])
    if code[16] != expected_org:
        return "organisation_check", (
            f"organisation code check character (position 17) is {code[16]!r}, "
            f"expected {expected_org!r}"
        )
    expected = USCC_ALPHABET[-sum(map(mul, values, _USCC_WEIGHTS)) % 31]
    if code[17] != expected:
        return "check_character", (
            f"check character (position 18) is {code[17]!r}, expected {expected!r}"
        )
    return None


def validate_uscc(code: str) -> None:
    """Raise :class:`InvalidIdentifier` unless ``code`` is a valid 18-character USCC."""
    problem = _uscc_problem(code)
    if problem is not None:
        raise _error(_USCC, problem)


def uscc_rejection(code: str) -> str | None:
    """Return ``None`` if ``code`` is a valid USCC, else the rule code it breaks."""
    problem = _uscc_problem(code)
    return None if problem is None else problem[0]


def uscc_check_character(first17: str) -> str:
    """Compute the USCC check character (position 18) for a 17-character body.

    Only the length and the alphabet of the body are checked; region and organisation code are
    not.
    """
    if not isinstance(first17, str):
        raise _error("USCC body", _type_problem(first17))
    try:
        values = list(map(_USCC_VALUE.__getitem__, first17))
    except KeyError:
        problem = _first_bad_character(first17, _USCC_VALUE, _USCC_CHARSET_HINT)
        assert problem is not None
        raise _error("USCC body", problem) from None
    if len(values) != 17:
        raise _error("USCC body", _length_problem(17, len(values)))
    return USCC_ALPHABET[-sum(map(mul, values, _USCC_WEIGHTS)) % 31]


def organisation_check_character(first8: str) -> str:
    """Compute the GB 11714 organisation code check character for an 8-character body."""
    kind = "organisation code body"
    if not isinstance(first8, str):
        raise _error(kind, _type_problem(first8))
    problem = _first_bad_character(
        first8, _ORG_VALUE, "only digits 0-9 and upper-case letters A-Z are allowed"
    )
    if problem is not None:
        raise _error(kind, problem)
    if len(first8) != 8:
        raise _error(kind, _length_problem(8, len(first8)))
    return _organisation_check(first8)


# --------------------------------------------------------------------------------------------
# Resident identity number (GB 11643-1999)
# --------------------------------------------------------------------------------------------


def _resident_id_slow_problem(number: str) -> _Problem:
    """Character/length/charset problems of a number that failed the fast-path shape test."""
    problem = _first_bad_character(number, _RID_ALLOWED, _RID_CHARSET_HINT)
    if problem is not None:
        return problem
    n = len(number)
    if n == 15 and "X" not in number:
        return "first_generation", (
            "first-generation 15-digit numbers are not accepted; "
            "an 18-character (second-generation) number is required"
        )
    if n != 18:
        return _length_problem(18, n)
    pos = number.index("X") + 1  # only remaining possibility: an 'X' before position 18
    return "charset", (
        f"contains 'X' at position {pos}; positions 1-17 must be digits "
        "('X' is only allowed as the check character at position 18)"
    )


def _resident_id_problem(number: object, today: date | None) -> _Problem | None:
    if not isinstance(number, str):
        return _type_problem(number)
    # Fast shape test: 18 ASCII characters, 17 digits, then a digit or 'X'.
    # (str.isdigit alone would accept full-width and other Unicode digits.)
    if not (
        len(number) == 18
        and number.isascii()
        and number[:17].isdigit()
        and number[17] in _RID_ALLOWED
    ):
        return _resident_id_slow_problem(number)
    if number[:2] not in _PROVINCES:
        return "region", "positions 1-2 are not a real province-level administrative division code"
    ymd = int(number[6:14])
    year, month_day = divmod(ymd, 10000)
    month, day = divmod(month_day, 100)
    if not 1 <= month <= 12 or day < 1 or day > _days_in_month(year, month):
        return "birth_date", "birth date (positions 7-14) is not a real calendar date"
    if ymd < _EARLIEST_BIRTH:
        return "birth_date", "birth date (positions 7-14) is before 1900-01-01"
    if today is None:
        today = date.today()
    if ymd > today.year * 10000 + today.month * 100 + today.day:
        return "birth_date", (
            f"birth date (positions 7-14) is in the future (after {today.isoformat()})"
        )
    expected = _RID_CHECK[
        (sum(map(mul, number.encode("ascii"), _RID_WEIGHTS)) - _RID_ASCII_OFFSET) % 11
    ]
    if number[17] != expected:
        return "check_character", (
            f"check character (position 18) is {number[17]!r}, expected {expected!r}"
        )
    return None


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month]


def validate_resident_id(number: str, *, today: date | None = None) -> None:
    """Raise :class:`InvalidIdentifier` unless ``number`` is a valid 18-character resident id.

    ``today`` bounds the birth date from above (default: ``date.today()``).
    """
    problem = _resident_id_problem(number, today)
    if problem is not None:
        raise _error(_RID, problem)


def resident_id_rejection(number: str, *, today: date | None = None) -> str | None:
    """Return ``None`` if ``number`` is a valid resident id, else the rule code it breaks."""
    problem = _resident_id_problem(number, today)
    return None if problem is None else problem[0]


def resident_id_check_character(first17: str) -> str:
    """Compute the ISO 7064 MOD 11-2 check character for the first 17 digits."""
    kind = "resident identity number body"
    if not isinstance(first17, str):
        raise _error(kind, _type_problem(first17))
    problem = _first_bad_character(first17, _DIGITS, "only digits 0-9 are allowed")
    if problem is not None:
        raise _error(kind, problem)
    if len(first17) != 17:
        raise _error(kind, _length_problem(17, len(first17), "digits"))
    return _RID_CHECK[
        (sum(map(mul, first17.encode("ascii"), _RID_WEIGHTS)) - _RID_ASCII_OFFSET) % 11
    ]


def resident_id_birth_date(number: str) -> date:
    """Birth date encoded in a valid resident id (validated first; raises if invalid)."""
    validate_resident_id(number)
    return date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def resident_id_gender(number: str) -> Literal["male", "female"]:
    """Gender encoded in a valid resident id: odd 17th digit is male, even is female."""
    validate_resident_id(number)
    return "male" if int(number[16]) % 2 == 1 else "female"
