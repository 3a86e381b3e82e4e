"""audit.entries.decision_entry_bytes writes canonical_bytes(decision_entry(...)), byte for
byte, whatever the entry holds: generated strings (quotes, backslashes, control and
non-ASCII characters), floats (negative zero, tiny, huge), optional fields and groups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import canonical_bytes
from audit.entries import decision_entry, decision_entry_bytes, subject_entry_parts
from features.warnings import Severity
from models.decisions import Evidence, RelatedPartyRef, SubjectDecision, SubjectMemo, WarningFlag
from models.model import Decision, RiskModel
from models.reasons import Reason
from models.registry import MODEL_FILE


class ModelFacts:
    """The two things an entry reads from a model: its version and manifest."""

    def __init__(self, version: str, sha: str, catalog: str) -> None:
        self.version = version
        self.manifest = {"artifacts": {MODEL_FILE: sha}, "catalog_hash": catalog}


finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(max_size=12)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
reasons = st.builds(
    Reason, code=text, description=text, contribution=finite, feature=text, value=finite
)
evidence = st.builds(
    Evidence,
    record=text,
    kind=st.none() | text,
    date=st.none() | dates,
    amount=st.none() | finite,
    limit=st.none() | finite,
    days_past_due=st.none() | st.integers(-(2**40), 2**40),
    share=st.none() | finite,
)
flags = st.builds(
    WarningFlag,
    code=text,
    severity=st.sampled_from(list(Severity)),
    description=text,
    since=dates,
    evidence=st.lists(evidence, max_size=3).map(tuple),
    via=st.none() | st.builds(RelatedPartyRef, role=text, subject_type=text, subject_key=text),
)
decisions = st.builds(
    Decision,
    probability_of_default=finite,
    score=st.integers(-(2**63), 2**63),
    grade=text,
    reasons=st.lists(reasons, max_size=5).map(tuple),
    thin_file=st.booleans(),
    model_version=text,
)
vectors = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=8
).map(lambda values: np.array(values, dtype=np.float64))
subjects = st.builds(
    SubjectDecision,
    subject_type=text,
    subject_key=text,
    features_as_of=dates,
    decision=decisions,
    warnings=st.lists(flags, max_size=3).map(tuple),
    features=vectors,
    explained=st.booleans(),
)
groups = st.none() | st.dictionaries(
    st.sampled_from(["region", "age_band", "gender", "other"]), text, max_size=4
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    timezones=st.just(timezone(timedelta(hours=8))),
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
)


@settings(max_examples=400, deadline=None)
@given(
    subject=subjects,
    strings=st.lists(text, min_size=9, max_size=9),
    decided_at=moments,
    reasons_given=st.booleans(),
    groups=groups,
)
def test_bytes_are_the_canonical_bytes_of_the_entry(
    subject: SubjectDecision,
    strings: list[str],
    decided_at: datetime,
    reasons_given: bool,
    groups: dict[str, str] | None,
) -> None:
    decision_id, kind, method, client, purpose, authorization, request, version, rules = strings
    arguments: dict[str, Any] = {
        "decision_id": decision_id,
        "decided_at": decided_at,
        "kind": kind,
        "method": method,
        "client": client,
        "purpose": purpose,
        "authorization_id": authorization,
        "request_id": request,
        "subject": subject,
        "model": cast(RiskModel, ModelFacts(version, strings[0][::-1], strings[1] + "x")),
        "warning_rules_version": rules,
        "reasons_given": reasons_given,
        "groups": groups,
    }
    expected = canonical_bytes(decision_entry(**arguments))
    assert decision_entry_bytes(**arguments).data == expected
    # The service keeps the subject's part per decision: made once, then reused.
    memo = SubjectMemo(subject_entry_parts)
    for _ in range(2):
        assert decision_entry_bytes(**arguments, subject_parts=memo).data == expected


def test_the_subject_part_kept_for_a_decision_is_not_used_for_its_replacement() -> None:
    old = _plain_subject(600)
    new = _plain_subject(655)  # a refresh: same subject key, another decision
    memo = SubjectMemo(subject_entry_parts)
    assert memo.get(old, False) == subject_entry_parts(old, False)
    assert memo.get(new, False) == subject_entry_parts(new, False) != memo.get(old, False)
    assert memo.get(new, True) == subject_entry_parts(new, True)


def _plain_subject(score: int) -> SubjectDecision:
    return SubjectDecision(
        subject_type="entity",
        subject_key="91330100MA0000001X",
        features_as_of=date(2026, 6, 30),
        decision=Decision(0.05, score, "B", (), False, "v1"),
        warnings=(),
        features=np.zeros(2),
        explained=True,
    )


def test_a_value_json_cannot_hold_is_refused_alike() -> None:
    subject = SubjectDecision(
        subject_type="entity",
        subject_key="91330100MA0000001X",
        features_as_of=date(2026, 6, 30),
        decision=Decision(float("nan"), 600, "B", (), False, "v1"),
        warnings=(),
        features=np.zeros(2),
        explained=True,
    )
    arguments: dict[str, Any] = {
        "decision_id": "01",
        "decided_at": datetime(2026, 11, 26, tzinfo=UTC),
        "kind": "batch",
        "method": "batch",
        "client": "c",
        "purpose": "p",
        "authorization_id": "",
        "request_id": "r",
        "subject": subject,
        "model": cast(RiskModel, ModelFacts("v1", "a" * 64, "b" * 64)),
        "warning_rules_version": "w",
        "reasons_given": False,
    }
    with pytest.raises(ValueError, match="Out of range float"):
        canonical_bytes(decision_entry(**arguments))
    with pytest.raises(ValueError, match="Out of range float"):
        decision_entry_bytes(**arguments)
