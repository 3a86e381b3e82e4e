"""The monitoring report of a model: what it served, against what it was trained on.

Read from the decision log (without opening or locking it, like
:func:`audit.log.find_decision`) for one model version and a time range, and from the
model's report in the registry (its evaluation summary and its reference profile,
:mod:`models.profile`):

- ``stability``: the population stability index (PSI) of the served scores and of every
  served feature against the training data, each with its band (below 0.10 ``stable``,
  below 0.25 ``moderate``, else ``significant``). A model trained before reference
  profiles were recorded has none: the section says so (``available: false``).
- ``score_distribution``: served scores in 20-point bands.
- ``grade_mix``: decisions per grade for each UTC day.
- ``fairness``: score distribution, grade mix and observed bad rate by region (province
  code), by age band (persons) and, only when ``by_gender``, by gender. Groups come from
  the log entry's subject (recorded at decision time; an entity's region also from its
  USCC). The bad rate joins each decision with the ``default_event`` records of its subject
  in the ``horizon_months`` after the decision's features as-of date; it counts only
  decisions whose whole window lies before the latest repayment or default record on file
  (matured). Without matured decisions the section says "no outcomes yet".

Everything here is domain code: no gRPC (the Audit servicer and ``credit-risk audit report``
call :func:`monitoring_report`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from audit.chain import list_segments, parse_line, read_segment, segment_name
from audit.entries import vector_from_entry
from features.training import add_months
from models.evaluation import score_histogram
from models.profile import PSI_BANDS, profile_stability
from models.registry import ModelRegistry
from models.scorecard import ScorecardConfig
from models.training import records_end
from records.store import RecordStore

__all__ = [
    "MONITORING_FORMAT",
    "Outcome",
    "ServedDecision",
    "monitoring_report",
    "observed_outcomes",
    "served_decisions",
]

MONITORING_FORMAT = 1
NO_OUTCOMES = "no outcomes yet"


@dataclass(frozen=True)
class ServedDecision:
    """What the report needs of one logged decision."""

    time: datetime
    method: str
    subject_type: str
    subject_key: str
    region: str
    age_band: str | None
    gender: str | None
    as_of: date
    score: int
    grade: str
    features: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Outcome:
    """A decision's observed outcome: ``matured`` when its whole window is on file."""

    matured: bool
    bad: bool


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str | None:
    utc = _utc(moment)
    return utc.isoformat() if utc is not None else None


def _served(body: dict[str, Any]) -> ServedDecision:
    subject = body["subject"]
    key = subject["key"]
    region = subject.get("region") or (key[2:4] if subject["type"] == "entity" else "unknown")
    return ServedDecision(
        time=datetime.fromisoformat(body["time"]),
        method=body["method"],
        subject_type=subject["type"],
        subject_key=key,
        region=region,
        age_band=subject.get("age_band"),
        gender=subject.get("gender"),
        as_of=date.fromisoformat(body["features"]["as_of"]),
        score=int(body["answer"]["score"]),
        grade=str(body["answer"]["grade"]),
        features=vector_from_entry(body),
    )


def served_decisions(
    directory: Path,
    version: str,
    *,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
) -> tuple[list[ServedDecision], dict[str, int]]:
    """The decisions of model ``version`` logged in [from_time, to_time) (no zone = UTC),
    read without opening the log; and counts of what was passed over (other models,
    unreadable lines; hashes are not checked: that is ``verify``)."""
    start, end = _utc(from_time), _utc(to_time)
    found: list[ServedDecision] = []
    skipped = Counter({"other_models": 0, "unreadable_lines": 0})
    if not directory.is_dir():
        return found, dict(skipped)
    for number, path in list_segments(directory):
        for line, raw, complete in read_segment(path):
            if not complete:  # an unfinished line after the last newline
                break
            entry = parse_line(raw, segment_name(number), line)
            if entry is None:
                skipped["unreadable_lines"] += 1
                continue
            body = entry.body
            moment = datetime.fromisoformat(body["time"])
            if (start and moment < start) or (end and moment >= end):
                continue
            if body.get("model", {}).get("version") != version:
                skipped["other_models"] += 1
                continue
            found.append(_served(body))
    return found, dict(skipped)


_DEFAULTS_OF = """
SELECT subject_type, subject_key, default_date FROM default_event
WHERE subject_key IN (SELECT unnest($keys))
"""


def observed_outcomes(
    store: RecordStore, decisions: Sequence[ServedDecision], horizon_months: int = 12
) -> list[Outcome]:
    """Per decision: bad = a default of its subject in (as_of, as_of + horizon]; matured =
    that window ends on or before the latest repayment or default record on file."""
    if not decisions:
        return []
    last = records_end(store)
    keys = sorted({d.subject_key for d in decisions})
    defaults: dict[tuple[str, str], list[date]] = defaultdict(list)
    for kind, key, day in store.query(_DEFAULTS_OF, {"keys": keys}):
        defaults[(str(kind), str(key))].append(day if isinstance(day, date) else day.date())
    outcomes = []
    for decision in decisions:
        window_end = add_months(decision.as_of, horizon_months)
        bad = any(
            decision.as_of < day <= window_end
            for day in defaults.get((decision.subject_type, decision.subject_key), ())
        )
        outcomes.append(Outcome(matured=last is not None and window_end <= last, bad=bad))
    return outcomes


def _quantiles(values: Sequence[int]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(("mean", "p10", "p25", "p50", "p75", "p90"))
    array = np.asarray(values, dtype=np.float64)
    points = np.quantile(array, [0.10, 0.25, 0.50, 0.75, 0.90])
    return {
        "mean": float(array.mean()),
        **{
            name: float(v)
            for name, v in zip(("p10", "p25", "p50", "p75", "p90"), points, strict=True)
        },
    }


def _group_rows(
    labels: Iterable[str | None],
    decisions: Sequence[ServedDecision],
    outcomes: Sequence[Outcome] | None,
    grade_names: Sequence[str],
) -> list[dict[str, Any]]:
    members: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if label is not None:
            members[label].append(index)
    rows = []
    for label in sorted(members):
        chosen = members[label]
        grade_counts = Counter(decisions[i].grade for i in chosen)
        row: dict[str, Any] = {
            "group": label,
            "n": len(chosen),
            "score": _quantiles([decisions[i].score for i in chosen]),
            "grades": {name: grade_counts.get(name, 0) for name in grade_names},
        }
        if outcomes is not None:
            matured = [outcomes[i] for i in chosen if outcomes[i].matured]
            bad = sum(o.bad for o in matured)
            row["with_outcome"] = len(matured)
            row["bad"] = bad
            row["bad_rate"] = bad / len(matured) if matured else None
        rows.append(row)
    return rows


def _fairness(
    decisions: Sequence[ServedDecision],
    outcomes: Sequence[Outcome] | None,
    outcome_note: str | None,
    grade_names: Sequence[str],
    *,
    by_gender: bool,
    horizon_months: int,
) -> dict[str, Any]:
    matured = sum(o.matured for o in outcomes) if outcomes is not None else 0
    if outcomes is None:
        status = outcome_note or "outcomes unavailable"
    else:
        status = "observed" if matured else NO_OUTCOMES
    section: dict[str, Any] = {
        "outcome_horizon_months": horizon_months,
        "outcomes": status,
        "decisions_with_outcome": matured,
        "notes": {
            "region": "province code: from the USCC of an entity, recorded at decision time "
            "for a person",
            "age_band": "persons only (not applicable to entities), age at decision time",
            "bad_rate": "a default of the subject within the horizon after the features' "
            "as-of date, over decisions whose whole horizon is on file",
        },
        "by_region": _group_rows((d.region for d in decisions), decisions, outcomes, grade_names),
        "by_age_band": _group_rows(
            (d.age_band if d.subject_type == "person" else None for d in decisions),
            decisions,
            outcomes,
            grade_names,
        ),
    }
    if by_gender:
        section["by_gender"] = _group_rows(
            (
                (d.gender or "not recorded") if d.subject_type == "person" else None
                for d in decisions
            ),
            decisions,
            outcomes,
            grade_names,
        )
    return section


def _grade_mix(decisions: Sequence[ServedDecision], grade_names: Sequence[str]) -> dict[str, Any]:
    days: dict[str, Counter[str]] = defaultdict(Counter)
    for decision in decisions:
        days[decision.time.astimezone(UTC).date().isoformat()][decision.grade] += 1
    rows = []
    for day in sorted(days):
        counts = days[day]
        total = sum(counts.values())
        rows.append(
            {
                "day": day,
                "n": total,
                "counts": {name: counts.get(name, 0) for name in grade_names},
                "shares": {name: counts.get(name, 0) / total for name in grade_names},
            }
        )
    return {"bucket": "day (UTC)", "grades": list(grade_names), "days": rows}


def _stability(
    profile: dict[str, Any] | None,
    decisions: Sequence[ServedDecision],
    feature_names: Sequence[str],
) -> dict[str, Any]:
    if profile is None:
        return {
            "available": False,
            "reason": "the model's report has no reference profile (it was trained before "
            "profiles were recorded): PSI against the training data cannot be computed",
            "bands": PSI_BANDS,
        }
    if not decisions:
        return {
            "available": False,
            "reason": "no served decisions of this model in the time range",
            "bands": PSI_BANDS,
        }
    matrix = np.vstack([d.features for d in decisions])
    score = profile_stability(profile["score"], [d.score for d in decisions])
    features = []
    for index, name in enumerate(feature_names):
        reference = profile["features"].get(name)
        if reference is None or index >= matrix.shape[1]:
            continue
        result = profile_stability(reference, matrix[:, index])
        features.append({"feature": name, **result})
    features.sort(key=lambda row: (-float(row["psi"]), str(row["feature"])))
    bands = Counter(str(row["band"]) for row in features)
    return {
        "available": True,
        "bands": PSI_BANDS,
        "reference_rows": profile["rows"],
        "served_rows": len(decisions),
        "score": score,
        "features_by_band": {name: bands.get(name, 0) for name in PSI_BANDS},
        "features": features,
    }


def monitoring_report(
    data_dir: Path,
    log_directory: Path,
    *,
    version: str | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    store: RecordStore | None = None,
    outcome_note: str | None = None,
    by_gender: bool = False,
    horizon_months: int = 12,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The monitoring report (JSON-ready) of model ``version`` (default: the current one)
    over the decisions logged in [from_time, to_time). Without ``store`` there is no bad
    rate (``outcome_note`` says why). Raises ``ModelNotFoundError`` for an unknown version."""
    found, manifest, evaluation = ModelRegistry(data_dir).report(version)
    decisions, skipped = served_decisions(
        log_directory, found, from_time=from_time, to_time=to_time
    )
    scorecard = ScorecardConfig.from_dict(manifest["scorecard"])
    grade_names = list(scorecard.grade_names)
    outcomes = observed_outcomes(store, decisions, horizon_months) if store is not None else None
    served_scores = np.asarray([d.score for d in decisions], dtype=np.int64)
    histogram = score_histogram(served_scores, scorecard.min_score, scorecard.max_score)
    methods = Counter(d.method for d in decisions)
    subjects = Counter(d.subject_type for d in decisions)
    moment = (generated_at or datetime.now(UTC)).astimezone(UTC)
    return {
        "format": MONITORING_FORMAT,
        "kind": "monitoring",
        "model_version": found,
        "generated_at": moment.isoformat(timespec="seconds"),
        "window": {
            "from": _iso(from_time),
            "to": _iso(to_time),
        },
        "model": {
            "created_at": manifest.get("created_at"),
            "catalog_hash": manifest.get("catalog_hash"),
            "kind": manifest.get("kind", "catalog"),
            "evaluation": evaluation.get("summary", {}),
        },
        "decisions": {
            "n": len(decisions),
            "first": min(d.time for d in decisions).isoformat() if decisions else None,
            "last": max(d.time for d in decisions).isoformat() if decisions else None,
            "by_method": dict(sorted(methods.items())),
            "by_subject_type": dict(sorted(subjects.items())),
            "mean_score": float(served_scores.mean()) if decisions else None,
            **skipped,
        },
        "reference_profile": {"available": "reference_profile" in evaluation},
        "stability": _stability(
            evaluation.get("reference_profile"), decisions, manifest.get("features", [])
        ),
        "score_distribution": {"edges": histogram["edges"], "served": histogram["counts"]},
        "grade_mix": _grade_mix(decisions, grade_names),
        "fairness": _fairness(
            decisions,
            outcomes,
            outcome_note,
            grade_names,
            by_gender=by_gender,
            horizon_months=horizon_months,
        ),
    }
