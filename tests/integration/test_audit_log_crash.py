"""kill -9 while appending: every acknowledged entry is in the log and the chain verifies."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audit.log import DecisionLog, verify_log

ROOT = Path(__file__).resolve().parents[2]

APPENDER = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path
from audit.log import DecisionLog

log = DecisionLog(Path(sys.argv[1]), segment_bytes=int(sys.argv[2]), fsync=sys.argv[3] == "1")
out = threading.Lock()

def appender(k: int) -> None:
    i = 0
    while True:
        receipt = log.append({
            "decision_id": f"{k}-{i}",
            "time": datetime.now(UTC).isoformat(),
            "features": [i * 0.1] * 40,
        })
        with out:
            sys.stdout.write(f"{receipt.sequence} {receipt.hash} {k}-{i}\\n")
            sys.stdout.flush()
        i += 1

for k in range(4):
    threading.Thread(target=appender, args=(k,), daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path, fsync: bool) -> None:
    log_dir = tmp_path / "audit"
    acks = tmp_path / "acknowledged.txt"  # a file, not a pipe: a full pipe would stall it
    with acks.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(log_dir), str(64 << 10), "1" if fsync else "0"],
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
    deadline = time.monotonic() + 30
    while acks.stat().st_size == 0:  # appending has begun
        assert process.poll() is None and time.monotonic() < deadline, process.stderr
        time.sleep(0.01)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL

    printed = acks.read_text().split("\n")
    printed.pop()  # the last piece: empty, or a line cut by the kill
    acknowledged: dict[int, tuple[str, str]] = {}
    for row in printed:
        number, digest, decision = row.split()
        acknowledged[int(number)] = (digest, decision)
    assert len(acknowledged) > 50

    result = verify_log(log_dir)
    assert result.ok, result
    assert result.last_sequence is not None and result.last_sequence >= max(acknowledged)
    with DecisionLog(log_dir) as log:  # recovery: a torn last line, if any, is cut off
        logged = {entry.sequence: entry for entry in log.entries()}
        for sequence, (digest, decision) in acknowledged.items():
            assert logged[sequence].hash == digest
            assert logged[sequence].body["decision_id"] == decision
        after = log.append({"decision_id": "after", "time": "2026-11-26T10:00:00+00:00"})
    assert after.sequence == len(logged)
    final = verify_log(log_dir)
    assert final.ok and final.entries == len(logged) + 1 and final.torn_tail_bytes == 0
    assert len(list(log_dir.glob("segment-*.jsonl"))) > 1  # it ran across rotations
