"""Batch scoring figures (issue #7, local engine), measured in one run.

The whole ``score-batch --all`` job (features, decisions with TreeSHAP reasons, warnings,
decision log with fsync, Parquet parts, combine) on a throwaway copy of a data directory,
then, in the same process and on the same feature matrix, the parts alone: the feature
build, the warning rules, LightGBM's bare batch predict, decisions without and with
reasons. Reports rows per second and the ratio of the whole job to the bare predict.

    .venv/bin/python benchmarks/bench_batch.py --data-dir /tmp/bench-var \
        --out benchmarks/results/batch.json

Without a prepared data directory, the demo province (``credit-risk serve --demo``'s, 50k
subjects) is built first.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from features.pipeline import build
from features.warning_eval import evaluate_warnings
from models.data import feature_matrix
from models.model import RiskModel
from records.runtime import open_store
from service.batch import BatchJob, run_batch
from service.demo import DemoPlan, prepare_demo
from settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    plan = DemoPlan()
    if not (args.data_dir / "store.duckdb").exists():
        prepare_demo(load_settings(data_dir=args.data_dir), plan)
    as_of = plan.end_date
    result: dict[str, Any] = {"machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "data"
        shutil.copytree(args.data_dir, copy, ignore=shutil.ignore_patterns("audit"))
        settings = load_settings(data_dir=copy)
        out = Path(scratch) / "scores.parquet"
        started = time.perf_counter()
        summary = run_batch(settings, BatchJob(as_of=as_of, out=out, chunk_rows=args.chunk_rows))
        job_seconds = time.perf_counter() - started
        result["job"] = {
            "subjects": summary.summary["subjects"],
            "chunk_rows": args.chunk_rows,
            "seconds": round(job_seconds, 2),
            "rows_per_second": round(summary.summary["subjects"] / job_seconds),
            "decide_seconds": summary.summary["decide_seconds"],
            "output_bytes": out.stat().st_size,
            "log_bytes": sum(p.stat().st_size for p in settings.audit_log_path.iterdir()),
        }
        model = RiskModel.load(settings.data_dir)
        parts: dict[str, float] = {}
        with open_store(settings, read_only=True) as store:
            tick = time.perf_counter()
            frame = build(store, as_of, home_province=settings.home_province)
            parts["feature_build"] = time.perf_counter() - tick
            tick = time.perf_counter()
            evaluate_warnings(store, as_of)
            parts["warnings"] = time.perf_counter() - tick
        matrix = feature_matrix(frame)
        for name, run in (
            ("bare_lightgbm_predict", lambda: model.booster.predict(matrix, num_threads=2)),
            ("decide_without_reasons", lambda: model.decide_batch(matrix, explain=False)),
            ("decide_with_reasons", lambda: model.decide_batch(matrix, explain=True)),
        ):
            tick = time.perf_counter()
            run()
            parts[name] = time.perf_counter() - tick
        result["parts_seconds"] = {k: round(v, 3) for k, v in parts.items()}
        result["job_over_bare_predict"] = round(job_seconds / parts["bare_lightgbm_predict"], 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
