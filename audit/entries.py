"""What the decision log records about one decision: enough to replay it bit for bit.

An entry names who asked (client, purpose, consent reference, request id), about whom
(the subject's key: the USCC of an entity, the keyed pseudonym of a person — never a raw
identity number), with what (model version and the sha256 of its model file, feature
catalog hash, warning-rules version, the exact feature vector and its as-of date) and
what was answered (score, PD, grade, the reasons if they were given, the warning flags
with their evidence). The feature vector is stored as the base64 of its little-endian
float64 bytes, so absent features (NaN) and every bit of every value survive JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from models.decisions import SubjectDecision, WarningFlag
from models.model import RiskModel
from models.reasons import Reason
from models.registry import MODEL_FILE

__all__ = [
    "ENTRY_FORMAT",
    "decision_entry",
    "reason_record",
    "vector_from_entry",
    "vector_text",
    "warning_record",
]

ENTRY_FORMAT = 1


def vector_text(values: npt.NDArray[np.float64]) -> str:
    """The exact bytes of a feature vector, as text (little-endian float64, base64)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode("ascii")


def vector_from_entry(entry: Mapping[str, Any]) -> npt.NDArray[np.float64]:
    """The feature vector an entry recorded, bit for bit."""
    raw = base64.b64decode(entry["features"]["vector_f64le_b64"], validate=True)
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


def reason_record(reason: Reason) -> dict[str, Any]:
    return {
        "code": reason.code,
        "feature": reason.feature,
        "value": reason.value,
        "contribution": reason.contribution,
    }


def warning_record(flag: WarningFlag) -> dict[str, Any]:
    return {
        "code": flag.code,
        "severity": flag.severity.value,
        "since": flag.since.isoformat(),
        "via": None
        if flag.via is None
        else {"role": flag.via.role, "subject": flag.via.subject_key},
        "evidence": [
            {
                "record": item.record,
                "kind": item.kind,
                "date": item.date.isoformat() if item.date else None,
                "amount": item.amount,
                "days_past_due": item.days_past_due,
            }
            for item in flag.evidence
        ],
    }


def decision_entry(
    *,
    decision_id: str,
    decided_at: datetime,
    kind: str,
    method: str,
    client: str,
    purpose: str,
    authorization_id: str,
    request_id: str,
    subject: SubjectDecision,
    model: RiskModel,
    warning_rules_version: str,
    reasons_given: bool,
) -> dict[str, Any]:
    """The log entry of one decision (``kind``: "online" or "batch")."""
    decision = subject.decision
    manifest = model.manifest
    return {
        "format": ENTRY_FORMAT,
        "decision_id": decision_id,
        "time": decided_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "method": method,
        "client": client,
        "purpose": purpose,
        "authorization_id": authorization_id,
        "request_id": request_id,
        "subject": {"type": subject.subject_type, "key": subject.subject_key},
        "model": {
            "version": model.version,
            "model_sha256": manifest["artifacts"][MODEL_FILE],
            "catalog_hash": manifest["catalog_hash"],
        },
        "warning_rules_version": warning_rules_version,
        "features": {
            "as_of": subject.features_as_of.isoformat(),
            "vector_f64le_b64": vector_text(subject.features),
        },
        "answer": {
            "score": decision.score,
            "probability_of_default": decision.probability_of_default,
            "grade": decision.grade,
            "thin_file": decision.thin_file,
            "reasons": [reason_record(r) for r in decision.reasons] if reasons_given else None,
            "warnings": [warning_record(flag) for flag in subject.warnings],
        },
    }
