"""service.batch_output: a chunk's output frame, built column by column."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from features.warnings import Severity
from models.decisions import Evidence, RelatedPartyRef, SubjectDecision, WarningFlag
from models.model import Decision
from models.reasons import Reason
from service.batch_output import OUTPUT_SCHEMA, output_frame

AS_OF = date(2026, 6, 30)


def subject(key: str, reasons: int, flags: list[tuple[str, str | None]]) -> SubjectDecision:
    return SubjectDecision(
        subject_type="entity" if key.startswith("9") else "person",
        subject_key=key,
        features_as_of=AS_OF,
        decision=Decision(
            probability_of_default=0.01 * (reasons + 1),
            score=600 + reasons,
            grade="ABCDE"[reasons],
            reasons=tuple(
                Reason(f"R{i:02d}", "text", 1.0 / (i + 1), f"feature_{i}", float(i))
                for i in range(reasons)
            ),
            thin_file=reasons == 0,
            model_version="v1",
        ),
        warnings=tuple(
            WarningFlag(
                code=code,
                severity=Severity.HIGH,
                description="d",
                since=date(2025, 1, len(code)),
                evidence=(Evidence("t:s:1", None, None, None, None, None, None),),
                via=None if role is None else RelatedPartyRef(role, "person", "P1"),
            )
            for code, role in flags
        ),
        features=np.zeros(3),
        explained=True,
    )


def expected_row(item: SubjectDecision, decision_id: str) -> dict[str, object]:
    """The row as the schema states it, field by field."""
    decision = item.decision
    return {
        "subject_type": item.subject_type,
        "subject_key": item.subject_key,
        "decision_id": decision_id,
        "features_as_of": item.features_as_of,
        "score": decision.score,
        "probability_of_default": decision.probability_of_default,
        "grade": decision.grade,
        "thin_file": decision.thin_file,
        "reasons": [
            {"code": r.code, "feature": r.feature, "contribution": r.contribution}
            for r in decision.reasons
        ],
        "warnings": [
            {
                "code": f.code,
                "severity": f.severity.value,
                "since": f.since,
                "via_role": None if f.via is None else f.via.role,
            }
            for f in item.warnings
        ],
        "model_version": decision.model_version,
    }


def test_rows_hold_each_subjects_own_reasons_and_warnings() -> None:
    decided = [
        subject("91330100MA0000001X", 4, [("DISHONEST", None), ("PLEDGE", "shareholder")]),
        subject("P-2", 0, []),  # thin file, no flags: empty lists, not nulls
        subject("91330100MA0000002X", 2, []),
        subject("P-4", 0, [("OVERDUE", "legal_representative")]),
    ]
    ids = [f"ID{i}" for i in range(len(decided))]
    frame = output_frame(decided, ids)
    assert frame.schema == pl.Schema(OUTPUT_SCHEMA)
    assert frame.to_dicts() == [expected_row(item, i) for item, i in zip(decided, ids, strict=True)]


def test_an_empty_chunk_has_the_schema() -> None:
    assert output_frame([], []).schema == pl.Schema(OUTPUT_SCHEMA)


def test_ids_must_match_the_subjects() -> None:
    with pytest.raises(ValueError, match="one decision id"):
        output_frame([subject("P-1", 1, [])], [])
