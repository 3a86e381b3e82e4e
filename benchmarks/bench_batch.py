"""Batch scoring figures (issue #7, local and Dask engines), measured in one run.

The whole ``score-batch --all`` job (features, decisions with TreeSHAP reasons, warnings,
decision log with fsync, Parquet parts, combine) on a throwaway copy of a data directory,
once on the local engine and once on a Dask LocalCluster (``dask-local``, ``--workers``
processes, cluster start included), each on its own copy; their outputs are checked equal
(decision ids aside). With ``--rounds N`` the two jobs alternate N times and the fastest
of each is reported (the machine is shared: its load moves single runs by ±30%). Then, in
the same process and on the same feature matrix, the parts alone: the feature build, the
warning rules, LightGBM's bare batch predict, decisions without and with reasons. Reports
rows per second and the ratio of the whole job to the bare predict.

    .venv/bin/python benchmarks/bench_batch.py --data-dir /tmp/bench-var --rounds 2 \
        --out benchmarks/results/batch.json

Without a prepared data directory, the demo province (``credit-risk serve --demo``'s, 50k
subjects) is built first.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from features.pipeline import build
from features.warning_eval import evaluate_warnings
from models.data import feature_matrix
from models.model import RiskModel
from records.runtime import open_store
from service.batch import BatchJob, run_batch
from service.demo import DemoPlan, prepare_demo
from settings import Settings, load_settings


def _cpu_seconds() -> float:
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _job(source: Path, scratch: Path, job: BatchJob) -> tuple[dict[str, Any], Settings]:
    """Run ``job`` (its ``out`` under ``scratch``) on a fresh copy of ``source``."""
    copy = scratch / f"data-{job.engine}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.rmtree(job.out.with_name(job.out.name + ".parts"), ignore_errors=True)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("audit"))
    settings = load_settings(data_dir=copy)
    cpu = _cpu_seconds()
    started = time.perf_counter()
    summary = run_batch(settings, job).summary
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    return {
        "engine": job.engine,
        "workers": job.workers,
        "subjects": summary["subjects"],
        "chunk_rows": job.chunk_rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),  # this process and its finished children (workers)
        "rows_per_second": round(summary["subjects"] / seconds),
        "decide_seconds": summary["decide_seconds"],
        "output_bytes": job.out.stat().st_size,
        "log_bytes": sum(p.stat().st_size for p in settings.audit_log_path.iterdir()),
    }, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="dask-local worker processes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the two jobs this many times, alternating; the fastest of each is kept",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    plan = DemoPlan()
    if not (args.data_dir / "store.duckdb").exists():
        prepare_demo(load_settings(data_dir=args.data_dir), plan)
    as_of = plan.end_date
    result: dict[str, Any] = {"machine": platform.processor() or platform.machine()}
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        outs = {engine: scratch / f"scores-{engine}.parquet" for engine in ("local", "dask")}
        jobs = {
            "job": BatchJob(as_of=as_of, out=outs["local"], chunk_rows=args.chunk_rows),
            "dask_local_job": BatchJob(
                as_of=as_of,
                out=outs["dask"],
                chunk_rows=args.chunk_rows,
                engine="dask-local",
                workers=args.workers,
            ),
        }
        rounds: list[dict[str, float]] = []
        for _ in range(args.rounds):
            rounds.append({})
            for name, job in jobs.items():
                found, settings = _job(args.data_dir, scratch, job)
                rounds[-1][job.engine] = found["seconds"]
                if name not in result or found["seconds"] < result[name]["seconds"]:
                    result[name] = found
        result["rounds_seconds"] = rounds
        local, spread = (pl.read_parquet(path).drop("decision_id") for path in outs.values())
        result["dask_local_job"]["same_rows_as_local"] = local.equals(spread)
        job_seconds = result["job"]["seconds"]
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
        bare = parts["bare_lightgbm_predict"]
        result["job_over_bare_predict"] = round(job_seconds / bare, 1)
        result["dask_local_job_over_bare_predict"] = round(
            result["dask_local_job"]["seconds"] / bare, 1
        )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
