"""Decision log figures (issue #6): appends per second and append latency p50 / p99, one
thread and 16 threads, fsync on and off; batch appends (``append_many``); verification.

Entries are shaped like the service's decision entries (audit/entries.py: 109 features as
base64 float64, five reasons, a warning with evidence; about 2 KiB of canonical JSON).
The log is written under ``--dir`` (default benchmarks/out, git-ignored), so fsync hits
the same disk as the project's data.

    .venv/bin/python benchmarks/bench_audit_log.py --out benchmarks/results/audit_log.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit.chain import canonical_bytes
from audit.ids import decision_id
from audit.log import DecisionLog, verify_log


def entry(n: int) -> dict[str, Any]:
    vector = os.urandom(109 * 8)
    return {
        "format": 1,
        "decision_id": decision_id(),
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "kind": "online",
        "method": "/creditrisk.v1.CreditRisk/Score",
        "client": "lender-0042",
        "purpose": "loan_approval",
        "authorization_id": f"AUTH-2026-{n:08d}",
        "request_id": f"req-{n}",
        "subject": {"type": "entity", "key": "91330106MA2B3C4D5E"},
        "model": {
            "version": "20261126T083450Z-de8bea61",
            "model_sha256": "ab" * 32,
            "catalog_hash": "cd" * 32,
        },
        "warning_rules_version": "fc67f20123db20ad",
        "features": {"as_of": "2026-06-30", "vector_f64le_b64": base64.b64encode(vector).decode()},
        "answer": {
            "score": 600 + n % 100,
            "probability_of_default": 0.0054 + n * 1e-9,
            "grade": "B",
            "thin_file": False,
            "reasons": [
                {
                    "code": f"R{k:02d}",
                    "feature": f"feature_{k}",
                    "value": k * 0.37,
                    "contribution": -0.1 * k,
                }
                for k in range(5)
            ],
            "warnings": [
                {
                    "code": "COURT_ENFORCEMENT",
                    "severity": "high",
                    "since": "2025-03-01",
                    "via": None,
                    "evidence": [
                        {
                            "record": "pr-1",
                            "kind": "enforcement",
                            "date": "2025-03-01",
                            "amount": 120000.0,
                            "days_past_due": None,
                        }
                    ],
                }
            ],
        },
    }


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(base: Path, *, threads: int, fsync: bool, seconds: float) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(dir=base)) / "audit"
    log = DecisionLog(directory, fsync=fsync)
    bodies = [entry(n) for n in range(2000)]  # built beforehand: only the log is timed
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds
    start_gate = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        mine = latencies[k]
        start_gate.wait()
        i = k
        while time.perf_counter() < stop:
            began = time.perf_counter()
            log.append(bodies[i % len(bodies)])
            mine.append(time.perf_counter() - began)
            i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    began = time.perf_counter()
    start_gate.wait()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - began
    stats = log.stats()
    log.close()
    merged = sorted(x for mine in latencies for x in mine)
    shutil.rmtree(directory.parent)
    return {
        "threads": threads,
        "fsync": fsync,
        "appends": len(merged),
        "appends_per_s": round(len(merged) / wall),
        "latency_ms": {
            "p50": round(percentile(merged, 0.50) * 1e3, 3),
            "p99": round(percentile(merged, 0.99) * 1e3, 3),
            "mean": round(statistics.fmean(merged) * 1e3, 3),
        },
        "batches": stats.batches,
        "mean_batch": round(stats.entries / max(stats.batches, 1), 2),
        "fsyncs": stats.fsyncs,
    }


def batch_job(base: Path, *, count: int, fsync: bool) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(dir=base)) / "audit"
    bodies = [entry(n) for n in range(count)]
    with DecisionLog(directory, fsync=fsync) as log:
        began = time.perf_counter()
        for i in range(0, count, 4096):
            log.append_many(bodies[i : i + 4096])
        wall = time.perf_counter() - began
    began = time.perf_counter()
    result = verify_log(directory)
    verify_wall = time.perf_counter() - began
    assert result.ok and result.entries == count, result
    size = sum(p.stat().st_size for p in directory.glob("segment-*"))
    shutil.rmtree(directory.parent)
    return {
        "fsync": fsync,
        "entries": count,
        "append_many_entries_per_s": round(count / wall),
        "verify_entries_per_s": round(count / verify_wall),
        "bytes_per_entry": round(size / count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch-entries", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    appends = []
    for fsync in (True, False):
        for threads in (1, 16):
            figures = run(args.dir, threads=threads, fsync=fsync, seconds=args.seconds)
            print(json.dumps(figures), flush=True)
            appends.append(figures)
    batches = []
    for fsync in (True, False):
        figures = batch_job(args.dir, count=args.batch_entries, fsync=fsync)
        print(json.dumps(figures), flush=True)
        batches.append(figures)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "entry_bytes": len(canonical_bytes(entry(0))),
        "seconds_per_run": args.seconds,
        "append": appends,
        "batch": batches,
    }
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
