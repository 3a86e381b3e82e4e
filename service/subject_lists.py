"""Lists of subjects given by users (one identifier per line), validated line by line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from records.identifiers import InvalidIdentifier, validate_resident_id, validate_uscc
from records.pseudonym import Pseudonymiser

__all__ = ["ListProblem", "SubjectList", "read_subject_list"]


@dataclass(frozen=True)
class ListProblem:
    line: int
    message: str


@dataclass
class SubjectList:
    keys: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # the file line of each key
    problems: list[ListProblem] = field(default_factory=list)


def read_subject_list(path: Path, pseudonymiser: Pseudonymiser) -> SubjectList:
    """USCCs stay as they are; resident ids become pseudonyms. Blank lines and lines
    starting with '#' are skipped; every other bad line is reported, none is fatal."""
    result = SubjectList()
    seen: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.rstrip("\r\n")
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            try:
                key = _key(text, pseudonymiser)
            except InvalidIdentifier as err:
                result.problems.append(ListProblem(number, str(err)))
                continue
            if key in seen:
                result.problems.append(ListProblem(number, "listed more than once"))
                continue
            seen.add(key)
            result.keys.append(key)
            result.lines.append(number)
    return result


def _key(text: str, pseudonymiser: Pseudonymiser) -> str:
    # A USCC always has a letter or a non-digit in its alphabet positions or ends the
    # same as a resident id would not; try the USCC rules first, then the resident id's.
    try:
        validate_uscc(text)
        return text
    except InvalidIdentifier as uscc_error:
        try:
            validate_resident_id(text)
        except InvalidIdentifier as person_error:
            raise InvalidIdentifier(
                f"neither a valid USCC ({uscc_error.rule}) nor a valid resident id "
                f"({person_error.rule})",
                rule=person_error.rule,
            ) from None
        return pseudonymiser.person_key(text)
