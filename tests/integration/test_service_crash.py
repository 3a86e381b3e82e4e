"""A server under load killed with SIGKILL: every decision whose answer a client received
is in the decision log, the chain verifies, the server starts again, and a logged
decision replays bit-exactly from the command line."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
from conftest import ServiceData, bearer
from test_service_process import BIN, ServerProcess, verify_log_as_a_user

from audit.log import find_decision
from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc


def _entities(data_dir: Path) -> list[str]:
    import duckdb

    with duckdb.connect(str(data_dir / "store.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT DISTINCT uscc FROM legal_entity WHERE established_on <= DATE '2026-06-30' "
            "ORDER BY uscc LIMIT 300"
        ).fetchall()
    return [str(row[0]) for row in rows]


def test_sigkill_under_load_loses_no_answered_decision(
    service_data: ServiceData, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(service_data.pristine, data_dir)
    subjects = _entities(data_dir)
    server = ServerProcess(data_dir)
    server.wait_serving()
    received: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(offset: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            i = offset
            while not stop.is_set():
                request = credit_risk_pb2.ScoreRequest(
                    subject=common_pb2.Subject(uscc=subjects[i % len(subjects)]),
                    purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
                    explain=i % 2 == 0,
                )
                try:
                    answer = stub.Score(
                        request, metadata=bearer(service_data.keys["lender"]), timeout=5
                    )
                except grpc.RpcError:
                    return  # the server is gone
                with lock:
                    received.append(answer.decision_id)
                i += 4

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(received) > 50, "the server was under load when killed"

    verify_log_as_a_user(data_dir, timeout=120)
    log_dir = data_dir / "audit"
    missing = [d for d in received if find_decision(log_dir, d) is None]
    assert missing == []

    replayed = subprocess.run(
        [str(BIN / "credit-risk"), "audit", "replay", received[0], "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["ok"] and report["decision_id"] == received[0]

    again = ServerProcess(data_dir)  # restarts on the same store and log
    try:
        again.wait_serving()
    finally:
        assert again.stop() == 0
