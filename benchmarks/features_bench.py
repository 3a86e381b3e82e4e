"""Feature pipeline at province scale: full materialisation, refresh, online lookup.

    .venv/bin/python benchmarks/features_bench.py --entities 300000 --persons 700000 \
        --store /tmp/bench/province.duckdb --out benchmarks/results/features.json

Builds the store with the generator (unless --store already exists), then, in this
process: materialise every subject as of --as-of (time, peak RSS, and where the time goes:
the DuckDB point-in-time reads vs the polars computation), refresh of single subjects and
their related parties (p50/p99 over --refreshes subjects), and lookups of a feature row
(mean over 200k lookups).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from features.pipeline import build
from features.sources import PointInTime, load_sources
from features.store import FeatureStore
from records.generator import ProvinceParams, generate_province
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER

SECRET = b"benchmark-secret-benchmark-secret-0123456789"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(path: Path, entities: int, persons: int, seed: int) -> dict[str, object]:
    started = time.perf_counter()
    frames = generate_province(ProvinceParams(entities=entities, persons=persons, seed=seed))
    generated = time.perf_counter() - started
    rows = {t: f.height for t, f in frames.items()}
    with RecordStore(path) as store:
        ingestor = Ingestor(store, Pseudonymiser(SECRET))
        for table in TABLE_ORDER:
            ingestor.ingest_frame(table, frames.pop(table), label=f"bench:{table}")
    return {
        "generate_seconds": round(generated, 1),
        "ingest_seconds": round(time.perf_counter() - started - generated, 1),
        "rows": rows,
        "total_rows": sum(rows.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=300_000)
    parser.add_argument("--persons", type=int, default=700_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 6, 30))
    parser.add_argument("--refreshes", type=int, default=100)
    parser.add_argument("--duckdb-memory", default="4GB", help="DuckDB memory limit")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    result: dict[str, object] = {
        "command": " ".join(["python", *sys.argv]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    if not args.store.exists():
        args.store.parent.mkdir(parents=True, exist_ok=True)
        result["prepare"] = prepare(args.store, args.entities, args.persons, args.seed)
        print(json.dumps(result["prepare"]), flush=True)

    with RecordStore(args.store, memory_limit=args.duckdb_memory) as store:
        point = PointInTime(args.as_of)
        started = time.perf_counter()
        sources = load_sources(store, point)
        read_seconds = time.perf_counter() - started
        del sources
        features = FeatureStore(store)
        started = time.perf_counter()
        rows = features.materialise(args.as_of)
        materialise_seconds = time.perf_counter() - started
        result["materialise"] = {
            "subjects": rows.height,
            "features": len(features.names),
            "seconds": round(materialise_seconds, 1),
            "of_which_duckdb_reads_seconds": round(read_seconds, 1),
            "peak_rss_mib": round(peak_rss_mib()),
        }
        print(json.dumps(result["materialise"]), flush=True)

        keys = rows["subject_key"].to_list()
        rng = random.Random(1)
        sample = rng.sample(keys, min(args.refreshes, len(keys)))
        for key in rng.sample(keys, 5):  # warm DuckDB's caches and the thread pools
            features.refresh([key])
        features.flush()
        timings = []
        persist = []
        sizes = []
        for key in sample:
            started = time.perf_counter()
            refreshed = features.refresh([key])  # served from memory when this returns
            served = time.perf_counter()
            features.flush()  # the snapshot table write, done behind the caller
            timings.append((served - started) * 1000)
            persist.append((time.perf_counter() - served) * 1000)
            sizes.append(refreshed.height)
        timings.sort()
        persist.sort()

        def pct(values: list[float], q: float) -> float:
            return round(values[min(len(values) - 1, int(len(values) * q))], 1)

        result["refresh"] = {
            "subjects_refreshed": len(sample),
            "rows_recomputed_median": statistics.median(sizes),
            "p50_ms": pct(timings, 0.5),
            "p90_ms": pct(timings, 0.9),
            "p99_ms": pct(timings, 0.99),
            "snapshot_write_behind_p50_ms": pct(persist, 0.5),
        }
        print(json.dumps(result["refresh"]), flush=True)
        started = time.perf_counter()
        build(store, args.as_of, sample[:1])
        result["refresh"]["single_build_ms"] = round(  # type: ignore[index]
            (time.perf_counter() - started) * 1000, 1
        )

        lookups = [rng.choice(keys) for _ in range(200_000)]
        started = time.perf_counter()
        for key in lookups:
            features.lookup(key)
        per_lookup = (time.perf_counter() - started) / len(lookups) * 1e6
        result["lookup"] = {"mean_us": round(per_lookup, 2), "lookups": len(lookups)}
        print(json.dumps(result["lookup"]), flush=True)
    result["peak_rss_mib"] = round(peak_rss_mib())
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
