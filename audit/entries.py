"""What the decision log records about one decision: enough to replay it bit for bit.

An entry names who asked (client, purpose, consent reference, request id), about whom
(the subject's key: the USCC of an entity, the keyed pseudonym of a person — never a raw
identity number), with what (model version and the sha256 of its model file, feature
catalog hash, warning-rules version, the exact feature vector and its as-of date) and
what was answered (score, PD, grade, the reasons if they were given, the warning flags
with their evidence). The feature vector is stored as the base64 of its little-endian
float64 bytes, so absent features (NaN) and every bit of every value survive JSON.

For the monitoring report's fairness view the subject may carry coarse, non-identifying
groups computed at decision time (:func:`subject_groups`): ``region``, the province code
(from the USCC of an entity, from the resident id of a person), ``age_band`` of a person
(from the birth date) and, only where configured, ``gender``.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from audit.chain import CanonicalBody
from models.decisions import SubjectDecision, SubjectMemo, WarningFlag
from models.model import RiskModel
from models.reasons import Reason
from models.registry import MODEL_FILE
from records.identifiers import resident_id_birth_date, resident_id_gender

__all__ = [
    "ENTRY_FORMAT",
    "age_band",
    "decision_entry",
    "decision_entry_bytes",
    "person_groups",
    "reason_record",
    "subject_entry_parts",
    "subject_groups",
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


def age_band(birth: date, on: date) -> str:
    """``"under 18"``, ``"18-29"``, ``"30-39"``, ... ``"60-69"``, ``"70+"``: the age on ``on``."""
    age = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if age < 18:
        return "under 18"
    if age < 30:
        return "18-29"
    if age >= 70:
        return "70+"
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def subject_groups(
    subject_type: str, identifier: str, on: date, *, with_gender: bool = False
) -> dict[str, str]:
    """The coarse groups of a valid identifier for the log entry: ``region`` (the province
    code: USCC characters 3-4, resident id characters 1-2), and for a person ``age_band``
    on ``on`` and, with ``with_gender``, ``gender``."""
    if subject_type == "entity":
        return {"region": identifier[2:4]}
    gender = resident_id_gender(identifier) if with_gender else None
    return person_groups(identifier[:6], resident_id_birth_date(identifier), gender, on)


def person_groups(id_region: str, birth_date: date, gender: str | None, on: date) -> dict[str, str]:
    """A person's groups from what the store keeps of the resident id (its region code,
    birth date and gender), for callers that only have the pseudonym; ``gender`` None
    leaves it out."""
    groups = {"region": id_region[:2], "age_band": age_band(birth_date, on)}
    if gender is not None:
        groups["gender"] = gender
    return groups


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
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The log entry of one decision (``kind``: "online" or "batch"); ``groups``
    (:func:`subject_groups`) go into the subject."""
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
        "subject": {
            "type": subject.subject_type,
            "key": subject.subject_key,
            **{k: groups[k] for k in ("region", "age_band", "gender") if groups and k in groups},
        },
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


# --- the same entry, straight to its canonical bytes ------------------------------------
#
# ``canonical_bytes(decision_entry(...))`` built a dozen dicts per decision and had the json
# encoder sort them all: ~30 µs an entry, a third of a batch chunk's Python. The function
# below writes the same bytes from the entry's parts, in the sorted key order spelled out
# (tests/unit/test_audit_entry_bytes.py holds it to canonical_bytes over generated entries).

_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_STRING = json.encoder.encode_basestring  # what canonical_bytes' encoder quotes strings with


def _scalar(value: object) -> str:
    """A JSON scalar exactly as canonical_bytes writes it (other values: through it)."""
    if isinstance(value, float):  # the common case first: PDs, contributions, values
        if not math.isfinite(value):
            raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
        return float.__repr__(value)
    if isinstance(value, str):
        return _STRING(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    return _JSON(value)


_REASON_TEXT: dict[tuple[str, str], tuple[str, str]] = {}  # the catalog's few, quoted once


def _reason_json(reason: Reason) -> str:
    named = (reason.code, reason.feature)
    parts = _REASON_TEXT.get(named)
    if parts is None:
        parts = (
            f'{{"code":{_STRING(reason.code)},"contribution":',
            f',"feature":{_STRING(reason.feature)},"value":',
        )
        if len(_REASON_TEXT) < 4096:  # reasons name catalog features; never unbounded
            _REASON_TEXT[named] = parts
    return f"{parts[0]}{_scalar(reason.contribution)}{parts[1]}{_scalar(reason.value)}}}"


@functools.lru_cache(maxsize=64)
def _model_json(version: str, model_sha256: str, catalog_hash: str) -> str:
    return _JSON({"version": version, "model_sha256": model_sha256, "catalog_hash": catalog_hash})


def subject_entry_parts(subject: SubjectDecision, reasons_given: bool) -> tuple[str, str]:
    """The JSON of an entry's ``answer`` and ``features``: what depends on the subject's
    decision alone (kept per subject by a :class:`models.decisions.SubjectMemo`)."""
    decision = subject.decision
    reasons = (
        "[" + ",".join(_reason_json(r) for r in decision.reasons) + "]" if reasons_given else "null"
    )
    warnings = "[]"  # most subjects have no flag: no encoder call for them
    if subject.warnings:
        warnings = _JSON([warning_record(flag) for flag in subject.warnings])
    answer = (
        f'{{"grade":{_scalar(decision.grade)},'
        f'"probability_of_default":{_scalar(decision.probability_of_default)},'
        f'"reasons":{reasons},"score":{_scalar(decision.score)},'
        f'"thin_file":{_scalar(decision.thin_file)},'
        f'"warnings":{warnings}}}'
    )
    features = (
        f'{{"as_of":"{subject.features_as_of.isoformat()}",'
        f'"vector_f64le_b64":"{vector_text(subject.features)}"}}'
    )
    return answer, features


def decision_entry_bytes(
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
    groups: Mapping[str, str] | None = None,
    subject_parts: SubjectMemo[tuple[str, str]] | None = None,
) -> CanonicalBody:
    """``canonical_bytes(decision_entry(...))`` for the same arguments, byte for byte,
    without building the entry: what the service and the batch job append. With
    ``subject_parts`` (a memo of :func:`subject_entry_parts`: the service asks about the
    same subjects again and again; a batch job asks once each) the subject's part is
    made once per decision."""
    if subject_parts is None:
        answer, features = subject_entry_parts(subject, reasons_given)
    else:
        answer, features = subject_parts.get(subject, reasons_given)
    manifest = model.manifest
    # The subject's keys in sorted order: age_band, gender, key, region, type.
    about: list[str] = []
    if groups:
        about.extend(f'"{k}":{_scalar(groups[k])}' for k in ("age_band", "gender") if k in groups)
    about.append(f'"key":{_STRING(subject.subject_key)}')
    if groups and "region" in groups:
        about.append(f'"region":{_scalar(groups["region"])}')
    about.append(f'"type":{_STRING(subject.subject_type)}')
    model_json = _model_json(
        model.version, manifest["artifacts"][MODEL_FILE], manifest["catalog_hash"]
    )
    # The per-call fields are strings: quoted directly (what _scalar does for a str).
    text = (
        f'{{"answer":{answer},"authorization_id":{_STRING(authorization_id)},'
        f'"client":{_STRING(client)},"decision_id":{_STRING(decision_id)},'
        f'"features":{features},'
        f'"format":{ENTRY_FORMAT},"kind":{_STRING(kind)},"method":{_STRING(method)},'
        f'"model":{model_json},"purpose":{_STRING(purpose)},'
        f'"request_id":{_STRING(request_id)},"subject":{{{",".join(about)}}},'
        f'"time":"{decided_at.astimezone(UTC).isoformat(timespec="microseconds")}",'
        f'"warning_rules_version":{_STRING(warning_rules_version)}}}'
    )
    return CanonicalBody(text.encode("utf-8"))
