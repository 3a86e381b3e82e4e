"""What the model's shape costs in reasons (TreeSHAP) and in discrimination (issue #7).

Reasons come from LightGBM's ``pred_contrib`` (path-dependent TreeSHAP, O(trees × leaves ×
depth²) a row), which was most of a batch job's time while the model grew 31 leaves
leaf-wise without a depth limit (mean depth ~11, max ~20). This trains the same frames
(one province, one holdout split) with a few shapes through the real training path
(``train_on_frames``: early stopping, calibration, report) and reports, for each, the
out-of-time AUC, KS and ECE of the calibrated PDs, the AUC of the raw scores, the trees
kept by early stopping, and ``pred_contrib`` microseconds a row on the same OOT rows (2
threads), one after the other in this one run. Since 2026-11-26 the registered default is
15 leaves at depth ≤ 4 with a learning rate of 0.1. It changes nothing registered.

    .venv/bin/python benchmarks/reasons_cost.py --out benchmarks/results/reasons_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.metrics import roc_auc_score

from features.training import training_frame
from models.data import LabelledRows, monthly_dates
from models.training import TrainingParams, train_on_frames
from records.store import RecordStore

BEFORE = "31 leaves, no depth limit, learning rate 0.05 (the default until 2026-11-26)"
SHAPES: dict[str, dict[str, Any]] = {
    BEFORE: {"num_leaves": 31, "max_depth": -1, "learning_rate": 0.05},
    "31 leaves, max_depth 6, 0.05": {"num_leaves": 31, "max_depth": 6, "learning_rate": 0.05},
    "15 leaves, max_depth 4, 0.05": {"num_leaves": 15, "max_depth": 4, "learning_rate": 0.05},
    "15 leaves, max_depth 4, 0.1 (registered default)": {
        "num_leaves": 15,
        "max_depth": 4,
        "learning_rate": 0.1,
    },
    "15 leaves, max_depth 4, 0.2": {"num_leaves": 15, "max_depth": 4, "learning_rate": 0.2},
    "7 leaves, max_depth 3, 0.1": {"num_leaves": 7, "max_depth": 3, "learning_rate": 0.1},
}


def _depths(booster: lgb.Booster) -> tuple[float, int]:
    def depth(node: dict[str, Any]) -> int:
        if "leaf_index" in node:
            return 0
        return 1 + max(depth(node["left_child"]), depth(node["right_child"]))

    found = [depth(tree["tree_structure"]) for tree in booster.dump_model()["tree_info"]]
    return round(float(np.mean(found)), 1), max(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=60_000)
    parser.add_argument("--persons", type=int, default=140_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--explain-rows", type=int, default=20_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    # model_quality.py's dates: 9 in-time months, then 3 out of time, ending 2025-05-31.
    dates = monthly_dates(date(2025, 5, 31), 12)
    in_time_dates, oot_dates = dates[:9], dates[9:]
    result: dict[str, Any] = {
        "command": "python benchmarks/reasons_cost.py",
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, 2 threads for LightGBM",
        "subjects": args.entities + args.persons,
        "shapes": {},
    }
    with tempfile.TemporaryDirectory(prefix="reasons-cost-") as scratch:
        command = [
            str(Path(sys.executable).parent / "credit-risk"), "generate", "--data-dir", scratch,
            "--entities", str(args.entities), "--persons", str(args.persons),
            "--seed", str(args.seed), "--json",
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        with RecordStore(Path(scratch) / "store.duckdb") as store:
            in_time = training_frame(store, in_time_dates, 12)
            oot = training_frame(store, oot_dates, 12)
    defaults = TrainingParams()
    oot_rows = LabelledRows.of(oot)
    rng = np.random.default_rng(1)
    explain = oot_rows.matrix[
        rng.choice(oot_rows.rows, min(args.explain_rows, oot_rows.rows), replace=False)
    ]
    for name, changes in SHAPES.items():
        trained = train_on_frames(
            in_time, oot, horizon_months=12, params=replace(defaults, **changes)
        )
        booster = trained.booster
        raw = booster.predict(oot_rows.matrix, raw_score=True, num_threads=2)
        booster.predict(explain[:200], pred_contrib=True, num_threads=2)  # warm
        started = time.perf_counter()
        booster.predict(explain, pred_contrib=True, num_threads=2)
        per_row = (time.perf_counter() - started) / explain.shape[0] * 1e6
        mean_depth, max_depth = _depths(booster)
        result["shapes"][name] = {
            "params": changes,
            "oot_auc": round(trained.metrics["oot_auc"], 4),
            "oot_ks": round(trained.metrics["oot_ks"], 4),
            "oot_ece": round(trained.metrics["oot_ece"], 4),
            "oot_auc_raw_score": round(float(roc_auc_score(oot_rows.label, raw)), 4),
            "grades_monotone": trained.metrics["grade_default_rate_monotone"],
            "trees": trained.best_iteration,
            "mean_depth": mean_depth,
            "max_depth": max_depth,
            "pred_contrib_us_per_row": round(per_row, 1),
        }
        print(name, json.dumps(result["shapes"][name]), flush=True)
    base = result["shapes"][BEFORE]["pred_contrib_us_per_row"]
    for shape in result["shapes"].values():
        shape["pred_contrib_vs_before"] = round(shape["pred_contrib_us_per_row"] / base, 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
