"""Ingestion rate of a large repayment file (target: a 10M-row file), CSV and Parquet.

    .venv/bin/python benchmarks/ingest_rate.py --entities 60000 --persons 140000 \
        --out benchmarks/results/ingest_rate.json

Generates a province, writes its files, ingests the tables the repayment rows refer to,
then times the ingestion of the repayment file into a fresh store, first pass (all new)
and second pass (all duplicates). Prints and records rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from datetime import date
from pathlib import Path
from tempfile import TemporaryDirectory

from records.generator import ProvinceParams, generate_province, write_files
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=60_000)
    parser.add_argument("--persons", type=int, default=140_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    frames = generate_province(
        ProvinceParams(entities=args.entities, persons=args.persons, seed=args.seed)
    )
    generate_seconds = time.perf_counter() - started
    results: dict[str, object] = {
        "command": " ".join(["python", *sys.argv]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "rows": {t: f.height for t, f in frames.items()},
        "generate_seconds": round(generate_seconds, 1),
        "runs": [],
    }
    secret = b"benchmark-secret-benchmark-secret-0123456789"
    for fmt in args.formats.split(","):
        with TemporaryDirectory() as tmp:
            directory = Path(tmp)
            write_files(frames, directory / "files", fmt)  # type: ignore[arg-type]
            with RecordStore(directory / "store.duckdb") as store:
                ingestor = Ingestor(store, Pseudonymiser(secret), progress=False)
                for table in ("legal_entity", "natural_person", "credit_account"):
                    ingestor.ingest_file(table, directory / "files" / f"{table}.{fmt}")
                path = directory / "files" / f"repayment.{fmt}"
                size = path.stat().st_size
                for attempt in ("first (all new)", "second (all duplicate)"):
                    summary = ingestor.ingest_file("repayment", path)
                    run = {
                        "format": fmt,
                        "pass": attempt,
                        "rows": summary.read,
                        "accepted": summary.accepted,
                        "duplicate": summary.duplicate,
                        "rejected": summary.rejected,
                        "file_mib": round(size / 2**20, 1),
                        "seconds": round(summary.seconds, 1),
                        "rows_per_second": round(summary.read / summary.seconds),
                        "peak_rss_mib": round(peak_rss_mib()),
                    }
                    print(json.dumps(run), flush=True)
                    results["runs"].append(run)  # type: ignore[attr-defined]
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
