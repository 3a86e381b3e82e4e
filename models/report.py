"""The model report: every evaluation figure as JSON, and a self-contained HTML page.

:func:`build_report` runs at training time and its result is saved as ``report.json`` in
the model's version directory; it holds every number the HTML page shows (the ROC curve
thinned to 200 points), so :func:`render_html` needs no data and no model, only the report
and the manifest.

A *tabular* model (:mod:`models.tabular`, trained on a flat table an agency brought) has its
own report, :func:`build_tabular_report`: cross-validated AUC and KS per fold, the pooled
out-of-fold figures, the calibration choice and the importance of the table's columns;
:func:`render_html` renders it on a page of tables.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from features.catalog import feature
from models.calibration import CalibrationChoice
from models.evaluation import (
    calibration_table,
    discrimination,
    expected_calibration_error,
    grade_table,
    population_stability,
    roc_points,
    score_histogram,
)
from models.scorecard import ScorecardConfig, grades, scores

__all__ = [
    "PAGE_STYLE",
    "REPORT_FORMAT",
    "build_report",
    "build_tabular_report",
    "html_pairs",
    "html_table",
    "render_html",
]

REPORT_FORMAT = 1
F64 = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int8]


def _split_figures(label: Labels, pd: F64, bins: int) -> dict[str, Any]:
    return {
        "rows": int(label.size),
        "defaults": int(label.sum()),
        "default_rate": float(label.mean()) if label.size else None,
        "mean_pd": float(pd.mean()) if pd.size else None,
        **discrimination(label, pd),
        "ece": expected_calibration_error(label, pd, bins),
        "calibration_table": calibration_table(label, pd, bins),
    }


def build_report(
    *,
    in_time_pd: F64,
    holdout: tuple[Labels, F64],
    oot: tuple[Labels, F64],
    importance_gain: npt.NDArray[Any],
    importance_split: npt.NDArray[Any],
    feature_names: Sequence[str],
    scorecard: ScorecardConfig,
    calibration: CalibrationChoice,
    ece_bins: int,
) -> dict[str, Any]:
    """Every evaluation figure of a freshly trained model (JSON-ready)."""
    oot_label, oot_pd = oot
    oot_figures = _split_figures(oot_label, oot_pd, ece_bins)
    holdout_figures = _split_figures(holdout[0], holdout[1], ece_bins)
    in_time_scores = scores(in_time_pd, scorecard)
    oot_scores = scores(oot_pd, scorecard)
    grade_figures = grade_table(oot_label, grades(oot_pd, scorecard), scorecard.grade_names)
    stability = population_stability(in_time_scores, oot_scores, bins=10)
    low, high = scorecard.min_score, scorecard.max_score
    in_hist, oot_hist = (
        score_histogram(in_time_scores, low, high),
        score_histogram(oot_scores, low, high),
    )
    importance: list[dict[str, Any]] = sorted(
        (
            {
                "feature": name,
                "group": feature(name).group,
                "gain": float(gain),
                "split": int(split),
            }
            for name, gain, split in zip(
                feature_names, importance_gain, importance_split, strict=True
            )
        ),
        key=lambda row: (-float(row["gain"]), str(row["feature"])),
    )
    summary = {
        **{f"oot_{k}": v for k, v in oot_figures.items() if k != "calibration_table"},
        **{f"holdout_{k}": v for k, v in holdout_figures.items() if k != "calibration_table"},
        "psi_in_time_vs_oot": stability["psi"],
        "grade_default_rate_monotone": grade_figures["default_rate_falls_from_worst_to_best"],
        "calibration": calibration.method,
    }
    return {
        "format": REPORT_FORMAT,
        "summary": summary,
        "notes": {
            "oot": "out-of-time validation dates; used for nothing but this report",
            "holdout": "in-time holdout subjects: early stopping and calibrator fit "
            "(its calibration figures are in-sample for the calibrator)",
            "calibration_bins": f"{ece_bins} equal-count bins by predicted PD",
        },
        "oot": {
            **oot_figures,
            "roc": roc_points(oot_label, oot_pd),
            "grades": grade_figures,
        },
        "holdout": holdout_figures,
        "calibration": calibration.to_dict(),
        "stability": stability,
        "score_distribution": {
            "edges": in_hist["edges"],
            "in_time": in_hist["counts"],
            "oot": oot_hist["counts"],
        },
        "importance": importance,
        "scorecard": scorecard.to_dict(),
    }


def build_tabular_report(
    *,
    folds: Sequence[dict[str, Any]],
    cv_auc: dict[str, Any],
    cv_ks: dict[str, Any],
    out_of_fold: tuple[Labels, F64],
    importance_gain: npt.NDArray[Any],
    importance_split: npt.NDArray[Any],
    columns: Sequence[tuple[str, str]],
    dropped: dict[str, str],
    calibration: CalibrationChoice,
    ece_bins: int,
) -> dict[str, Any]:
    """Every evaluation figure of a model trained on a flat table (JSON-ready): per-fold and
    mean ± std AUC and KS, and the calibrated out-of-fold PDs pooled over the folds.
    ``columns`` are (column, kind) pairs in model order."""
    label, pd = out_of_fold
    figures = _split_figures(label, pd, ece_bins)
    importance: list[dict[str, Any]] = sorted(
        (
            {"feature": name, "kind": kind, "gain": float(gain), "split": int(split)}
            for (name, kind), gain, split in zip(
                columns, importance_gain, importance_split, strict=True
            )
        ),
        key=lambda row: (-float(row["gain"]), str(row["feature"])),
    )
    summary = {
        "cv_auc_mean": cv_auc["mean"],
        "cv_auc_std": cv_auc["std"],
        "cv_ks_mean": cv_ks["mean"],
        "cv_ks_std": cv_ks["std"],
        "folds": len(folds),
        **{f"oof_{k}": v for k, v in figures.items() if k != "calibration_table"},
        "calibration": calibration.method,
    }
    return {
        "format": REPORT_FORMAT,
        "kind": "tabular",
        "summary": summary,
        "notes": {
            "cv": "stratified folds; each fold's model stopped early on an inner split of its "
            "training rows and was scored on its test fold",
            "out_of_fold": "every row scored by the fold model that did not see it, then "
            "calibrated; the calibrator was fitted to these scores (its figures here are "
            "in-sample for the calibrator; the out-of-fold ECE of the choice is not)",
            "calibration_bins": f"{ece_bins} equal-count bins by predicted PD",
        },
        "cv": {"folds": list(folds), "auc": cv_auc, "ks": cv_ks},
        "out_of_fold": {**figures, "roc": roc_points(label, pd)},
        "calibration": calibration.to_dict(),
        "importance": importance,
        "dropped_columns": dict(dropped),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000 or (abs(value) >= 10 and value.is_integer()):
            return f"{value:,.0f}"  # large figures and score edges
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(values: dict[str, Any]) -> str:
    return _table([{"name": k, "value": v} for k, v in values.items()], ["name", "value"])


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child { text-align: left; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures figure { margin: 0; } img { max-width: 520px; }
code { font-size: 0.85em; }
"""


PAGE_STYLE = _STYLE  # the pages' shared look, for other self-contained pages


def html_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """An HTML table of ``rows`` (dicts) in ``columns``, figures formatted as on this page."""
    return _table(rows, columns)


def html_pairs(values: dict[str, Any]) -> str:
    """A two-column (name, value) HTML table."""
    return _pairs(values)


def render_html(report: dict[str, Any], manifest: dict[str, Any]) -> str:
    """A self-contained page: figures as base64 PNG, tables, provenance."""
    if report.get("kind") == "tabular":
        return _render_tabular_html(report, manifest)
    from models.plots import report_figures  # matplotlib only when a page is rendered

    version = str(manifest.get("version", "?"))
    summary = report["summary"]
    headline = {
        key: summary.get(key)
        for key in (
            "oot_auc",
            "oot_gini",
            "oot_ks",
            "oot_brier",
            "oot_ece",
            "oot_rows",
            "oot_defaults",
            "oot_default_rate",
            "oot_mean_pd",
            "holdout_auc",
            "holdout_ece",
            "psi_in_time_vs_oot",
            "grade_default_rate_monotone",
            "calibration",
        )
    }
    data = manifest.get("data", {})
    provenance = {
        "version": version,
        "created_at": manifest.get("created_at"),
        "catalog_hash": manifest.get("catalog_hash"),
        "as_of_dates": ", ".join(data.get("as_of_dates", [])),
        "validation_dates": ", ".join(data.get("validation_dates", [])),
        "horizon_months": data.get("horizon_months"),
        "rows": json.dumps(data.get("rows", {})),
        "defaults": json.dumps(data.get("defaults", {})),
        "best_iteration": manifest.get("best_iteration"),
        **{f"{k} version": v for k, v in manifest.get("libraries", {}).items()},
    }
    calibration = report["calibration"]
    images = "".join(
        f'<figure><img src="data:image/png;base64,{png}" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, png in report_figures(report)
    )
    oot = report["oot"]
    sections = {
        "calibration": _table(
            oot["calibration_table"],
            ["bin", "count", "defaults", "mean_pd", "default_rate", "min_pd", "max_pd"],
        ),
        "grades": _table(oot["grades"]["grades"], ["grade", "count", "defaults", "default_rate"]),
        "grades_monotone": _fmt(oot["grades"]["default_rate_falls_from_worst_to_best"]),
        "psi": _fmt(report["stability"]["psi"]),
        "stability": _table(
            report["stability"]["bins"],
            ["above", "up_to", "expected_share", "actual_share", "psi"],
        ),
        "importance": _table(report["importance"][:20], ["feature", "group", "gain", "split"]),
        "method": html.escape(str(calibration["method"])),
        "selection": html.escape(str(calibration["selection"])),
        "ece": html.escape(json.dumps(calibration["out_of_fold_ece"])),
        "folds": f"{calibration['folds']} folds over {calibration['rows']:,} holdout rows "
        f"with {calibration['defaults']:,} defaults",
    }
    title = html.escape(version)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Risk model {title}</title><style>{_STYLE}</style></head>
<body>
<h1>Risk model <code>{title}</code></h1>
<h2>Headline (out of time)</h2>{_pairs(headline)}
<div class="figures">{images}</div>
<h2>Calibration</h2>
<p>Chosen: <b>{sections["method"]}</b> ({sections["selection"]}: {sections["ece"]};
{sections["folds"]}). Out-of-time calibration by decile of predicted PD:</p>
{sections["calibration"]}
<h2>Grades (out of time)</h2>
{sections["grades"]}
<p>Default rate falls from the worst grade to the best: <b>{sections["grades_monotone"]}</b></p>
<h2>Score stability (in time → out of time)</h2>
<p>PSI {sections["psi"]}</p>
{sections["stability"]}
<h2>Feature importance (gain, top 20)</h2>
{sections["importance"]}
<h2>Provenance</h2>{_pairs(provenance)}
</body></html>
"""


def _render_tabular_html(report: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The page of a tabular model: cross-validation, calibration, columns, provenance."""
    version = html.escape(str(manifest.get("version", "?")))
    data = manifest.get("data", {})
    target = manifest.get("target", {})
    provenance = {
        "version": manifest.get("version"),
        "created_at": manifest.get("created_at"),
        "kind": "tabular (the table's own columns; no feature catalog)",
        "source": data.get("source"),
        "source sha256": data.get("sha256"),
        "target": f"{target.get('column')} (bad = {target.get('bad')!r})",
        "rows": data.get("rows"),
        "bad_rows": data.get("bad_rows"),
        "null_target_rows": data.get("null_target_rows"),
        "best_iteration": manifest.get("best_iteration"),
        **{f"{k} version": v for k, v in manifest.get("libraries", {}).items()},
    }
    calibration = report["calibration"]
    dropped = [{"column": k, "reason": v} for k, v in report["dropped_columns"].items()]
    calibration_table = _table(
        report["out_of_fold"]["calibration_table"],
        ["bin", "count", "defaults", "mean_pd", "default_rate", "min_pd", "max_pd"],
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Tabular model {version}</title><style>{_STYLE}</style></head>
<body>
<h1>Tabular model <code>{version}</code></h1>
<h2>Headline (cross-validated)</h2>{_pairs(report["summary"])}
<h2>Folds</h2>
{_table(report["cv"]["folds"], ["fold", "rows", "bad_rows", "auc", "ks", "best_iteration"])}
<h2>Calibration</h2>
<p>Chosen: <b>{html.escape(str(calibration["method"]))}</b>
(out-of-fold ECE: {html.escape(json.dumps(calibration["out_of_fold_ece"]))}).
Out-of-fold calibration by decile of predicted PD:</p>
{calibration_table}
<h2>Columns (importance by gain)</h2>
{_table(report["importance"], ["feature", "kind", "gain", "split"])}
<h2>Dropped columns</h2>{_table(dropped, ["column", "reason"])}
<h2>Provenance</h2>{_pairs(provenance)}
</body></html>
"""
