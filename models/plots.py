"""The report's figures, drawn with matplotlib's Agg canvas into base64 PNG.

Figures are built with the object-oriented API (``Figure`` + ``FigureCanvasAgg``), never
pyplot, so no global state or GUI backend is involved and rendering is safe in a server.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["figure_png", "report_figures"]

_SIZE = (5.2, 3.8)


def _png(draw: Callable[[Axes], None], size: tuple[float, float] = _SIZE) -> str:
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_png(draw: Callable[[Axes], None], size: tuple[float, float] = _SIZE) -> str:
    """A figure drawn by ``draw`` on one set of axes, as base64 PNG (for other pages)."""
    return _png(draw, size)


def _roc(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        roc = report["oot"]["roc"]
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
        auc = report["oot"].get("auc")
        label = f"out of time, AUC {auc:.3f}" if auc is not None else "out of time"
        ax.plot(roc["fpr"], roc["tpr"], label=label)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC")
        ax.legend(loc="lower right")

    return draw


def _calibration(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        for split, marker in (("oot", "o"), ("holdout", "s")):
            table = report[split]["calibration_table"]
            ax.plot(
                [row["mean_pd"] for row in table],
                [row["default_rate"] for row in table],
                marker=marker,
                label="out of time" if split == "oot" else "holdout (calibration fit)",
            )
        top = max(
            [row["mean_pd"] for row in report["oot"]["calibration_table"]]
            + [row["default_rate"] for row in report["oot"]["calibration_table"]]
            + [0.01]
        )
        ax.plot([0, top], [0, top], linestyle=":", color="grey")
        ax.set_xlabel("mean predicted PD (decile)")
        ax.set_ylabel("observed default rate")
        ax.set_title(f"Calibration (ECE {report['oot']['ece']:.4f})")
        ax.legend(loc="upper left")

    return draw


def _scores(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        dist = report["score_distribution"]
        edges = dist["edges"]
        for split, label in (("in_time", "in time"), ("oot", "out of time")):
            counts = dist[split]
            total = sum(counts) or 1
            ax.stairs([c / total for c in counts], edges, label=label)
        ax.set_xlabel("score")
        ax.set_ylabel("share of subjects")
        ax.set_title(f"Score distribution (PSI {report['stability']['psi']:.3f})")
        ax.legend(loc="upper left")

    return draw


def _grades(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        rows = report["oot"]["grades"]["grades"]
        names = [row["grade"] for row in rows]
        rates = [row["default_rate"] or 0.0 for row in rows]
        bars = ax.bar(names, rates)
        ax.bar_label(bars, labels=[f"{row['count']:,}" for row in rows], fontsize=8)
        ax.set_xlabel("grade (bar label: subjects)")
        ax.set_ylabel("observed default rate")
        ax.set_title("Default rate by grade (out of time)")

    return draw


def _importance(report: dict[str, Any]) -> Callable[[Axes], None]:
    def draw(ax: Axes) -> None:
        rows = report["importance"][:20][::-1]
        ax.barh([row["feature"] for row in rows], [row["gain"] for row in rows])
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("total gain")
        ax.set_title("Feature importance (top 20)")

    return draw


def report_figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, base64 PNG) of the ROC curve, calibration curve, score histogram, grade
    default rates and top-20 importance."""
    return [
        ("ROC curve (out of time)", _png(_roc(report))),
        ("Calibration curve", _png(_calibration(report))),
        ("Score histogram", _png(_scores(report))),
        ("Default rate by grade", _png(_grades(report))),
        ("Top-20 feature importance (gain)", _png(_importance(report), (5.2, 5.2))),
    ]
