"""Risk-model quality and scoring speed on a generated province (issue #4).

    .venv/bin/python benchmarks/model_quality.py --entities 60000 --persons 140000 --seed 7 \
        --out benchmarks/results/model_quality.json

Generates the province into a fresh data directory, trains with `credit-risk train`
(in-time month ends, the last ones out of time), then, in this process: single-row
`decide` latency (PD + points + grade, with and without reasons) and batch `predict`
throughput on 1M rows (the feature matrix repeated), with LightGBM.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from tempfile import mkdtemp

import numpy as np

from features.store import FeatureStore
from models.model import RiskModel
from records.store import RecordStore


def cli(*args: str) -> dict[str, object]:
    command = [str(Path(sys.executable).parent / "credit-risk"), *args]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=60_000)
    parser.add_argument("--persons", type=int, default=140_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of-end", default="2025-05-31")
    parser.add_argument("--months", type=int, default=9)
    parser.add_argument("--validation-months", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    data = Path(mkdtemp(prefix="model-quality-"))
    result: dict[str, object] = {
        "command": " ".join(["python", *sys.argv]),
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    started = time.perf_counter()
    generated = cli("generate", "--entities", str(args.entities), "--persons",
                    str(args.persons), "--seed", str(args.seed), "--json", "--data-dir",
                    str(data))
    result["generate_seconds"] = round(time.perf_counter() - started, 1)
    result["rows"] = generated["rows"]
    trained = cli("train", "--as-of-end", args.as_of_end, "--months", str(args.months),
                  "--validation-months", str(args.validation_months), "--data-dir", str(data))
    result["train"] = trained
    print(json.dumps(trained), flush=True)
    manifest_path = Path(str(trained["path"])) / "report.json"
    report = json.loads(manifest_path.read_text())
    result["summary"] = report["summary"]
    result["grade_table"] = report["oot"]["grades"]

    model = RiskModel.load(data)
    with RecordStore(data / "store.duckdb") as store:
        features = FeatureStore(store)
        rows = features.materialise(date.fromisoformat(args.as_of_end))
    matrix = rows.select(list(features.names)).cast(float).to_numpy()
    rng = np.random.default_rng(1)
    picks = rng.integers(0, matrix.shape[0], 2_000)
    for explain in (False, True):
        timings = []
        for index in picks:
            vector = matrix[index]
            begin = time.perf_counter()
            model.decide(vector, explain=explain)
            timings.append((time.perf_counter() - begin) * 1e6)
        key = "decide_with_reasons_us" if explain else "decide_us"
        result[key] = {"p50": round(percentile(timings, 0.5), 1),
                       "p99": round(percentile(timings, 0.99), 1)}
    big = np.tile(matrix, (int(np.ceil(1_000_000 / matrix.shape[0])), 1))[:1_000_000]
    begin = time.perf_counter()
    model.predict(big)
    seconds = time.perf_counter() - begin
    result["batch_predict"] = {"rows": big.shape[0], "seconds": round(seconds, 2),
                               "rows_per_second": round(big.shape[0] / seconds)}
    print(json.dumps({k: result[k] for k in ("decide_us", "decide_with_reasons_us",
                                             "batch_predict")}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
