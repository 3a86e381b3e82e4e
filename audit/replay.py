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

from audit.entries import reason_record, vector_from_entry, warning_record
from features.catalog import feature_names
from features.pipeline import KEY, build
from features.warning_eval import evaluate_warnings
from models.data import feature_matrix
from models.decisions import flags_from_frame
from models.model import RiskModel
from models.registry import MODEL_FILE
from records.store import RecordStore

__all__ = ["Difference", "ReplayPart", "ReplayReport", "replay_decision"]


@dataclass(frozen=True)
class Difference:
    field: str  # e.g. "score", "reasons", "features.pub_enforcement_active"
    recorded: str
    replayed: str


@dataclass
class ReplayPart:
    """One recomputation's comparisons: field -> bit-exact match, and what differed."""

    matches: dict[str, bool] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    unavailable: str | None = None  # why it could not be recomputed at all

    @property
    def ok(self) -> bool:
        return self.unavailable is None and all(self.matches.values())

    def compare(self, name: str, recorded: Any, replayed: Any, same: bool | None = None) -> None:
        equal = recorded == replayed if same is None else same
        self.matches[name] = equal
        if not equal:
            self.differences.append(Difference(name, repr(recorded), repr(replayed)))


@dataclass
class ReplayReport:
    decision_id: str
    model_version: str
    from_recorded_features: ReplayPart = field(default_factory=ReplayPart)
    from_records_store: ReplayPart = field(default_factory=ReplayPart)

    @property
    def ok(self) -> bool:
        return self.from_recorded_features.ok and self.from_records_store.ok

    @property
    def matches(self) -> dict[str, bool]:
        return {**self.from_recorded_features.matches, **self.from_records_store.matches}

    @property
    def differing(self) -> list[str]:
        return sorted(name for name, same in self.matches.items() if not same)

    @property
    def differing_features(self) -> list[str]:
        prefix = "features."
        return [
            d.field[len(prefix) :]
            for d in self.from_records_store.differences
            if d.field.startswith(prefix)
        ]

    def to_dict(self) -> dict[str, Any]:
        def part(value: ReplayPart) -> dict[str, Any]:
            return {
                "ok": value.ok,
                "matches": dict(sorted(value.matches.items())),
                "differences": [vars(d) for d in value.differences],
                "unavailable": value.unavailable,
            }

        return {
            "decision_id": self.decision_id,
            "model_version": self.model_version,
            "ok": self.ok,
            "differing": self.differing,
            "from_recorded_features": part(self.from_recorded_features),
            "from_records_store": part(self.from_records_store),
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
    model_part = report.from_recorded_features
    model = RiskModel.load(data_dir, version, compiled=False)
    model_part.compare(
        "model_file", entry["model"]["model_sha256"], model.manifest["artifacts"][MODEL_FILE]
    )
    vector = vector_from_entry(entry)
    reasons_given = recorded["reasons"] is not None
    decision = model.decide(vector, explain=reasons_given)
    model_part.compare("score", recorded["score"], decision.score)
    model_part.compare(
        "probability_of_default",
        recorded["probability_of_default"],
        decision.probability_of_default,
        _same_float(decision.probability_of_default, recorded["probability_of_default"]),
    )
    model_part.compare("grade", recorded["grade"], decision.grade)
    model_part.compare("thin_file", recorded["thin_file"], decision.thin_file)
    if reasons_given:
        replayed = [reason_record(r) for r in decision.reasons]
        model_part.compare(
            "reasons",
            recorded["reasons"],
            replayed,
            len(replayed) == len(recorded["reasons"])
            and all(_same_reason(a, b) for a, b in zip(replayed, recorded["reasons"], strict=True)),
        )

    store_part = report.from_records_store
    key = entry["subject"]["key"]
    as_of = date.fromisoformat(entry["features"]["as_of"])
    rows = build(
        store, as_of, [key], home_province=home_province, retention_years=retention_years
    ).filter(pl.col(KEY) == key)
    if rows.height != 1:
        store_part.unavailable = f"the subject has no feature row as of {as_of} in the store now"
        return report
    fresh = feature_matrix(rows)[0]
    names = feature_names()
    for i, name in enumerate(names):
        if fresh[i : i + 1].tobytes() != vector[i : i + 1].tobytes():
            store_part.compare(f"features.{name}", float(vector[i]), float(fresh[i]), False)
    store_part.matches["features"] = fresh.tobytes() == vector.tobytes()
    flags = flags_from_frame(
        evaluate_warnings(store, as_of, [key], retention_years=retention_years)
    ).get(key, ())
    store_part.compare("warnings", recorded["warnings"], [warning_record(f) for f in flags])
    return report


def _same_reason(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        a["code"] == b["code"]
        and a["feature"] == b["feature"]
        and _same_float(a["value"], b["value"])
        and _same_float(a["contribution"], b["contribution"])
    )
