"""Replaying a logged decision: did the service answer what its model and records say?

Two recomputations, each compared field by field with what the entry recorded:

1. **from the recorded feature vector**, with the recorded model version (its artifact
   hashes verified by the registry, and its model file's sha256 compared with the one the
   entry names): score, PD, grade, thin-file marker and, when reasons were given, the
   reasons must match bit for bit;
2. **from the records store**, as of the recorded features date: the subject's features
   (point in time, so records reported later do not count) must equal the recorded
   vector bit for bit, and the warning flags (codes, dates, evidence) the recorded ones.
   A record altered in place after the decision shows here, named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from audit.entries import vector_from_entry, warning_record
from features.catalog import feature_names
from features.pipeline import KEY, build
from features.warning_eval import evaluate_warnings
from models.data import feature_matrix
from models.decisions import flags_from_frame
from models.model import RiskModel
from models.registry import MODEL_FILE
from records.store import RecordStore

__all__ = ["ReplayReport", "replay_decision"]


@dataclass
class ReplayReport:
    decision_id: str
    model_version: str
    matches: dict[str, bool] = field(default_factory=dict)  # field -> bit-exact match
    differing_features: list[str] = field(default_factory=list)  # recomputed from records
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(self.matches.values()) and not self.differing_features

    @property
    def differing(self) -> list[str]:
        return sorted(name for name, same in self.matches.items() if not same)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "model_version": self.model_version,
            "ok": self.ok,
            "matches": dict(sorted(self.matches.items())),
            "differing": self.differing,
            "differing_features": self.differing_features,
            "notes": self.notes,
        }


def _same_float(a: float, b: float) -> bool:
    return bool(np.float64(a).tobytes() == np.float64(b).tobytes())


def replay_decision(
    entry: Mapping[str, Any],
    *,
    data_dir: Path,
    store: RecordStore,
    home_province: str = "33",
    retention_years: int = 5,
) -> ReplayReport:
    recorded = entry["answer"]
    version = entry["model"]["version"]
    report = ReplayReport(entry["decision_id"], version)
    model = RiskModel.load(data_dir, version, compiled=False)
    report.matches["model_file"] = (
        model.manifest["artifacts"][MODEL_FILE] == entry["model"]["model_sha256"]
    )
    vector = vector_from_entry(entry)
    reasons_given = recorded["reasons"] is not None
    decision = model.decide(vector, explain=reasons_given)
    report.matches["score"] = decision.score == recorded["score"]
    report.matches["probability_of_default"] = _same_float(
        decision.probability_of_default, recorded["probability_of_default"]
    )
    report.matches["grade"] = decision.grade == recorded["grade"]
    report.matches["thin_file"] = decision.thin_file == recorded["thin_file"]
    if reasons_given:
        report.matches["reasons"] = [(r.code, r.feature) for r in decision.reasons] == [
            (r["code"], r["feature"]) for r in recorded["reasons"]
        ] and all(
            _same_float(r.contribution, x["contribution"]) and _same_float(r.value, x["value"])
            for r, x in zip(decision.reasons, recorded["reasons"], strict=False)
        )

    key = entry["subject"]["key"]
    as_of = date.fromisoformat(entry["features"]["as_of"])
    rows = build(
        store, as_of, [key], home_province=home_province, retention_years=retention_years
    ).filter(pl.col(KEY) == key)
    if rows.height != 1:
        report.matches["features_from_records"] = False
        report.notes.append(f"the subject has no feature row as of {as_of} in the store now")
    else:
        fresh = feature_matrix(rows)[0]
        same = fresh.tobytes() == vector.tobytes()
        report.matches["features_from_records"] = same
        if not same:
            names = feature_names()
            report.differing_features = [
                names[i]
                for i in range(len(names))
                if fresh[i : i + 1].tobytes() != vector[i : i + 1].tobytes()
            ]
    flags = flags_from_frame(
        evaluate_warnings(store, as_of, [key], retention_years=retention_years)
    ).get(key, ())
    report.matches["warnings"] = [warning_record(flag) for flag in flags] == recorded["warnings"]
    return report
