"""Time and peak memory of `credit-risk generate` for a province (default 1M subjects).

    .venv/bin/python benchmarks/generate_bench.py --entities 300000 --persons 700000 \
        --out benchmarks/results/generate.json

Runs the real command in child processes (so peak RSS is the command's own): once into a
fresh store (generate + validated ingestion), once to Parquet files, once to CSV files.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from tempfile import mkdtemp


def run(command: list[str]) -> dict[str, object]:
    started = time.perf_counter()
    # GNU time reports the child's own peak resident set size (KiB) on its last line.
    completed = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    peak_kib = int(completed.stderr.strip().splitlines()[-1])
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return {
        "command": "credit-risk " + " ".join(command[1:]),
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_kib / 1024),
        "rows": sum(report["rows"].values()),
        "report": report,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=300_000)
    parser.add_argument("--persons", type=int, default=700_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cli = str(Path(sys.executable).parent / "credit-risk")
    base = [cli, "generate", "--entities", str(args.entities), "--persons", str(args.persons),
            "--seed", str(args.seed), "--json"]
    results: dict[str, object] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "subjects": args.entities + args.persons,
        "runs": [],
    }
    workdir = Path(mkdtemp(prefix="generate-bench-"))
    try:
        for label, extra in (
            ("parquet files", ["--to-files", str(workdir / "parquet"), "--format", "parquet"]),
            ("csv files", ["--to-files", str(workdir / "csv"), "--format", "csv"]),
            ("store (generate + validated ingestion)", ["--data-dir", str(workdir / "data")]),
        ):
            run_result = run(base + extra)
            run_result["target"] = label
            print(json.dumps({k: v for k, v in run_result.items() if k != "report"}), flush=True)
            results["runs"].append(run_result)  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
