"""Single-row and batch raw-score speed: LightGBM's predict against the lleaves-compiled forest.

    .venv/bin/python benchmarks/inference.py --data-dir /tmp/model-quality-XXXX \
        --out benchmarks/results/inference.json

Uses the current registered model of a data directory (e.g. the one
``benchmarks/model_quality.py`` leaves under /tmp/model-quality-*), compiling it with
``credit-risk compile``'s code first if it has no compiled forest. Rows are the real
feature vectors at --as-of (materialised from the store) when the store is there, else
rows sampled within the model's split thresholds. Single rows: the two engines are timed
on the same rows, interleaved (which goes first alternates), ``num_threads=1``; also
``RiskModel.decide(explain=False)`` with each engine. Batches: 1M rows, 2 threads each.
Every figure is checked for equality (max abs difference) against LightGBM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from models.compiled import (
    COMPILED_RECORD,
    CompiledForest,
    compile_version,
    lleaves_versions,
    sample_rows,
)
from models.model import RiskModel
from models.registry import COMPILED_DIR, ModelRegistry


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = np.asarray(values)
    return {
        "p50": round(float(np.percentile(ordered, 50)), 2),
        "p99": round(float(np.percentile(ordered, 99)), 2),
    }


def _feature_rows(data_dir: Path, as_of: str, names: tuple[str, ...]) -> np.ndarray | None:
    store_path = data_dir / "store.duckdb"
    if not store_path.is_file():
        return None
    from features.store import FeatureStore
    from records.store import RecordStore

    with RecordStore(store_path) as store:
        features = FeatureStore(store)
        frame = features.materialise(date.fromisoformat(as_of))
    matrix = frame.select(list(names)).cast(float).to_numpy()
    return np.ascontiguousarray(matrix, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--as-of", default="2025-05-31")
    parser.add_argument("--single-rows", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    registry = ModelRegistry(args.data_dir)
    version = registry.current()
    result: dict[str, Any] = {
        "command": "python benchmarks/inference.py " + " ".join(sys.argv[1:]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "version": version,
        "libraries": {**lleaves_versions(), "lightgbm": str(lgb.__version__)},
    }
    compiled_dir = registry.path(version) / COMPILED_DIR
    if not (compiled_dir / COMPILED_RECORD).is_file():
        compiled = compile_version(registry, version)
        if not compiled.equivalence.passed:
            raise SystemExit(f"compiled forest differs from LightGBM: {compiled.equivalence}")
    record = json.loads((compiled_dir / COMPILED_RECORD).read_text())
    result["compile"] = {
        "trees": record["trees"],
        "compile_seconds": record["compile_seconds"],
        "equivalence": record["equivalence"],
    }

    lleaves_model = RiskModel.load(args.data_dir, batch_threads=args.threads)
    lightgbm_model = RiskModel.load(args.data_dir, batch_threads=args.threads, compiled=False)
    assert lleaves_model.engine == "lleaves", lleaves_model.engine_reason
    booster = lleaves_model.booster
    forest = lleaves_model._forest
    assert isinstance(forest, CompiledForest)

    started = time.perf_counter()
    matrix = _feature_rows(args.data_dir, args.as_of, lleaves_model.feature_names)
    result["rows_source"] = "materialised features" if matrix is not None else "sampled"
    if matrix is None:
        matrix = sample_rows(booster, args.single_rows)
    result["feature_rows"] = {
        "rows": int(matrix.shape[0]),
        "seconds": time.perf_counter() - started,
    }
    rng = np.random.default_rng(1)
    picks = matrix[rng.integers(0, matrix.shape[0], args.single_rows)]

    timings: dict[str, list[float]] = {"lightgbm": [], "lleaves": []}
    worst = 0.0
    clock = time.perf_counter_ns
    for i, row in enumerate(picks):
        one = row.reshape(1, -1)
        order = ("lightgbm", "lleaves") if i % 2 == 0 else ("lleaves", "lightgbm")
        scores: dict[str, float] = {}
        for engine in order:
            begin = clock()
            if engine == "lightgbm":
                value = booster.predict(one, raw_score=True, num_threads=1)[0]
            else:
                value = forest.raw_score(one)[0]
            timings[engine].append((clock() - begin) / 1_000)
            scores[engine] = float(value)
        worst = max(worst, abs(scores["lightgbm"] - scores["lleaves"]))
    result["single_row_raw_score_us"] = {k: _percentiles(v) for k, v in timings.items()}
    result["single_row_max_abs_diff"] = worst

    decide: dict[str, list[float]] = {"lightgbm": [], "lleaves": []}
    models = {"lightgbm": lightgbm_model, "lleaves": lleaves_model}
    for i, row in enumerate(picks[:5_000]):
        order = ("lightgbm", "lleaves") if i % 2 == 0 else ("lleaves", "lightgbm")
        for engine in order:
            begin = clock()
            models[engine].decide(row, explain=False)
            decide[engine].append((clock() - begin) / 1_000)
    result["decide_no_reasons_us"] = {k: _percentiles(v) for k, v in decide.items()}

    repeats = int(np.ceil(args.batch_rows / matrix.shape[0]))
    big = np.ascontiguousarray(np.tile(matrix, (repeats, 1))[: args.batch_rows])
    batch: dict[str, Any] = {"rows": int(big.shape[0]), "threads": args.threads}
    begin = time.perf_counter()
    reference = booster.predict(big, raw_score=True, num_threads=args.threads)
    seconds = time.perf_counter() - begin
    batch["lightgbm"] = {
        "seconds": round(seconds, 3),
        "rows_per_second": round(big.shape[0] / seconds),
    }
    begin = time.perf_counter()
    compiled_scores = forest.raw_score(big, num_threads=args.threads)
    seconds = time.perf_counter() - begin
    batch["lleaves"] = {
        "seconds": round(seconds, 3),
        "rows_per_second": round(big.shape[0] / seconds),
    }
    batch["max_abs_diff"] = float(np.max(np.abs(reference - compiled_scores)))
    result["batch_raw_score"] = batch

    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
