"""kill -9 in the middle of an ingestion leaves the store exactly as it was."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from conftest import entity_row, make_uscc

from records.store import RecordStore


def test_sigkill_mid_file_leaves_the_store_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = tmp_path / "first.csv"
    pl.DataFrame([entity_row(i) for i in range(1, 11)]).write_csv(first)
    big = tmp_path / "big.csv"
    template = entity_row(0)
    n = 400_000
    pl.DataFrame(
        {k: [v] * n for k, v in template.items() if k != "uscc"}
        | {"uscc": [make_uscc(i) for i in range(100, 100 + n)]}
    ).select(list(template)).write_csv(big)

    command = [
        sys.executable,
        "-m",
        "service.cli",
        "ingest",
        "legal_entity",
        "--json",
        "--data-dir",
        str(data),
    ]
    subprocess.run([*command, str(first)], check=True, capture_output=True, timeout=120)
    process = subprocess.Popen([*command, str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    assert process.poll() is None, "ingestion finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    with RecordStore(data / "store.duckdb") as store:
        assert store.count("legal_entity") == 10
        assert store.query("SELECT count(*) FROM ingestion WHERE status = 'committed'") == [(1,)]
    finished = subprocess.run(
        [*command, str(big)], check=True, capture_output=True, timeout=300, text=True
    )
    assert '"accepted": 400000' in finished.stdout
