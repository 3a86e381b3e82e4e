"""The monitoring report as one self-contained HTML page (figures as base64 PNG).

Rendered from the report's JSON alone (:func:`audit.monitoring.monitoring_report`), with the
evaluation report's page style, tables and figure helper (:mod:`models.report`,
:mod:`models.plots`; matplotlib's Agg canvas, no pyplot).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes

__all__ = ["render_monitoring_html"]


def _score_figure(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        bins = report["stability"]["score"]["bins"]
        finite = [row for row in bins if not row["missing"]]
        labels = [f"≤{row['up_to']:.0f}" if row["up_to"] is not None else "rest" for row in finite]
        positions = list(range(len(finite)))
        ax.bar(
            [p - 0.2 for p in positions],
            [row["expected_share"] for row in finite],
            width=0.4,
            label="training (in time)",
        )
        ax.bar(
            [p + 0.2 for p in positions],
            [row["actual_share"] for row in finite],
            width=0.4,
            label="served",
        )
        ax.set_xticks(positions, labels, rotation=45, fontsize=7)
        ax.set_xlabel("score decile of the training data (upper edge)")
        ax.set_ylabel("share")
        psi = report["stability"]["score"]["psi"]
        ax.set_title(f"Score: served vs training (PSI {psi:.3f})")
        ax.legend(loc="upper right")

    return draw


def _psi_figure(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        rows = report["stability"]["features"][:20][::-1]
        colours = {"stable": "tab:green", "moderate": "tab:orange", "significant": "tab:red"}
        ax.barh(
            [row["feature"] for row in rows],
            [row["psi"] for row in rows],
            color=[colours[row["band"]] for row in rows],
        )
        ax.axvline(0.10, linestyle=":", color="grey")
        ax.axvline(0.25, linestyle="--", color="grey")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("PSI (lines: 0.10, 0.25)")
        ax.set_title("Feature PSI, top 20")

    return draw


def _grade_figure(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        mix = report["grade_mix"]
        days = [row["day"] for row in mix["days"]]
        bottom = [0.0] * len(days)
        for grade in mix["grades"]:
            shares = [row["shares"][grade] for row in mix["days"]]
            ax.bar(days, shares, bottom=bottom, label=grade)
            bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        ax.set_ylabel("share of decisions")
        ax.set_title("Grade mix by day (UTC)")
        ax.legend(loc="upper right", fontsize=7)

    return draw


def _group_figure(rows: list[dict[str, Any]], title: str) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        names = [str(row["group"]) for row in rows]
        medians = [row["score"]["p50"] for row in rows]
        low = [m - row["score"]["p25"] for m, row in zip(medians, rows, strict=True)]
        high = [row["score"]["p75"] - m for m, row in zip(medians, rows, strict=True)]
        ax.bar(names, medians, yerr=[low, high], capsize=3)
        ax.set_ylabel("median score (bars: quartiles)")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        lowest = min((row["score"]["p25"] for row in rows), default=0.0)
        ax.set_ylim(bottom=max(0.0, lowest - 50.0))

    return draw


def _group_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat = []
    for row in rows:
        flat.append(
            {
                "group": row["group"],
                "n": row["n"],
                "mean score": row["score"]["mean"],
                "p25": row["score"]["p25"],
                "median": row["score"]["p50"],
                "p75": row["score"]["p75"],
                **{f"grade {k}": v for k, v in row["grades"].items()},
                "with outcome": row.get("with_outcome"),
                "bad": row.get("bad"),
                "bad rate": row.get("bad_rate"),
            }
        )
    return flat


def render_monitoring_html(report: dict[str, Any]) -> str:
    """A self-contained page of the monitoring report: figures, tables, provenance."""
    from models.plots import figure_png  # matplotlib only when a page is rendered
    from models.report import PAGE_STYLE, html_pairs, html_table

    stability = report["stability"]
    fairness = report["fairness"]
    figures: list[tuple[str, str]] = []
    if stability["available"]:
        figures.append(("Score distribution against training", figure_png(_score_figure(report))))
        if stability["features"]:
            figures.append(("Feature PSI", figure_png(_psi_figure(report), (5.2, 5.2))))
    if report["grade_mix"]["days"]:
        figures.append(("Grade mix over time", figure_png(_grade_figure(report))))
    groups = [("by_region", "region (province)"), ("by_age_band", "age band")]
    if "by_gender" in fairness:
        groups.append(("by_gender", "gender"))
    for key, label in groups:
        if fairness[key]:
            title = f"Score by {label}"
            figures.append((title, figure_png(_group_figure(fairness[key], title))))
    images = "".join(
        f'<figure><img src="data:image/png;base64,{png}" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, png in figures
    )
    if stability["available"]:
        score = stability["score"]
        stability_html = (
            f"<p>Score PSI <b>{score['psi']:.4f}</b> ({html.escape(score['band'])}); "
            f"features by band: {html.escape(str(stability['features_by_band']))}. "
            f"Bands: {html.escape(str(stability['bands']))}.</p>"
            + html_table(
                score["bins"],
                ["above", "up_to", "missing", "expected_share", "actual_share", "psi"],
            )
            + "<h3>Features (highest PSI first)</h3>"
            + html_table(stability["features"], ["feature", "psi", "band"])
        )
    else:
        stability_html = f"<p><b>Not available:</b> {html.escape(stability['reason'])}</p>"
    fairness_html = "".join(
        f"<h3>By {html.escape(label)}</h3>"
        + html_table(
            _group_table(fairness[key]),
            list(_group_table(fairness[key])[0]) if fairness[key] else ["group", "n"],
        )
        for key, label in groups
    )
    grade_rows = [
        {"day": row["day"], "n": row["n"], **row["counts"]} for row in report["grade_mix"]["days"]
    ]
    decisions = {k: v for k, v in report["decisions"].items() if not isinstance(v, dict)}
    for key in ("by_method", "by_subject_type"):
        decisions.update({f"{key[3:]} {k}": v for k, v in report["decisions"][key].items()})
    version = html.escape(str(report["model_version"]))
    window = report["window"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Monitoring: model {version}</title><style>{PAGE_STYLE}</style></head>
<body>
<h1>Monitoring report: model <code>{version}</code></h1>
<p>Decisions logged from {html.escape(str(window["from"] or "the start"))}
to {html.escape(str(window["to"] or "now"))}; generated
{html.escape(str(report["generated_at"]))}.</p>
<h2>Served decisions</h2>{html_pairs(decisions)}
<div class="figures">{images}</div>
<h2>Stability against the training data (PSI)</h2>{stability_html}
<h2>Grade mix by day (UTC)</h2>
{html_table(grade_rows, ["day", "n", *report["grade_mix"]["grades"]])}
<h2>Fairness</h2>
<p>Outcomes: <b>{html.escape(str(fairness["outcomes"]))}</b> (horizon
{fairness["outcome_horizon_months"]} months; decisions with an outcome:
{fairness["decisions_with_outcome"]}).</p>
{html_pairs(fairness["notes"])}
{fairness_html}
<h2>Model evaluation (at training)</h2>{html_pairs(report["model"]["evaluation"])}
<h2>Provenance</h2>{html_pairs({k: v for k, v in report["model"].items() if k != "evaluation"})}
</body></html>
"""
