"""Ten SIGKILLs in a row under mixed load (scores, reported records, watchlist changes),
restarting each time: every acknowledged decision and every acknowledged record batch is
there afterwards, the decision log's chain verifies, the store opens, and the service
comes back to SERVING each time."""

from __future__ import annotations

import random
import shutil
import signal
import threading
import time
from pathlib import Path

import duckdb
import grpc
from conftest import ServiceData, bearer
from test_service_process import ServerProcess, verify_log_as_a_user

from audit.log import DecisionLog
from creditrisk.v1 import (
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

ROUNDS = 10


class Load:
    """Clients of one server life: what each was told is kept, whatever the kill breaks."""

    def __init__(self, port: int, keys: dict[str, str], subjects: list[str], as_of: str) -> None:
        self.port = port
        self.keys = keys
        self.subjects = subjects
        self.as_of = as_of
        self.decisions: list[str] = []
        self.records: list[str] = []  # record ids of acknowledged batches
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._score, args=(n,)) for n in range(3)] + [
            threading.Thread(target=self._report),
            threading.Thread(target=self._watch),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(20)

    def _score(self, offset: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            for i in range(offset, 1 << 30, 3):
                request = credit_risk_pb2.ScoreRequest(
                    subject=common_pb2.Subject(uscc=self.subjects[i % len(self.subjects)]),
                    purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
                )
                try:
                    answer = stub.Score(request, metadata=bearer(self.keys["lender"]), timeout=5)
                except grpc.RpcError:
                    return  # killed
                with self.lock:
                    self.decisions.append(answer.decision_id)

    def _report(self) -> None:
        tag = f"{time.monotonic_ns()}"
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = records_pb2_grpc.RecordsStub(channel)
            for n in range(1 << 30):
                ids = [f"CR-{tag}-{n}-{i}" for i in range(20)]
                batch = records_pb2.RecordBatch(
                    batch_id=f"crash-{tag}-{n}",
                    table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                    rows=[
                        records_pb2.Row(
                            fields={
                                "record_id": record_id,
                                "kind": "administrative_penalty",
                                "subject_type": "entity",
                                "subject_id": self.subjects[(n * 20 + i) % len(self.subjects)],
                                "event_date": self.as_of,
                                "amount": "2000.00",
                                "status": "active",
                                "reported_at": f"{self.as_of}T09:00:00",
                            }
                        )
                        for i, record_id in enumerate(ids)
                    ],
                )
                try:
                    summary = stub.SubmitRecords(
                        iter([batch]), metadata=bearer(self.keys["reporter"]), timeout=10
                    )
                except grpc.RpcError:
                    return
                assert summary.accepted == len(ids), summary
                with self.lock:
                    self.records += ids

    def _watch(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            for n in range(1 << 30):
                subject = common_pb2.Subject(uscc=self.subjects[n % len(self.subjects)])
                request = credit_risk_pb2.WatchlistRequest(
                    subjects=[credit_risk_pb2.WatchedSubject(subject=subject, reference=f"r{n}")]
                )
                call = stub.Watch if n % 3 else stub.Unwatch
                try:
                    call(request, metadata=bearer(self.keys["lender"]), timeout=5)
                except grpc.RpcError:
                    return


def test_ten_sigkills_under_load_lose_nothing_acknowledged(
    service_data: ServiceData, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(service_data.pristine, data_dir)
    with duckdb.connect(str(data_dir / "store.duckdb"), read_only=True) as con:
        as_of = str(con.execute("SELECT max(as_of) FROM feature_snapshot").fetchone()[0])  # type: ignore[index]
        subjects = [
            str(row[0])
            for row in con.execute(
                "SELECT DISTINCT uscc FROM legal_entity ORDER BY uscc LIMIT 200"
            ).fetchall()
        ]
    rng = random.Random(11)
    decisions: list[str] = []
    records: list[str] = []
    for _ in range(ROUNDS):
        server = ServerProcess(data_dir)
        server.wait_serving(120)
        load = Load(server.port, service_data.keys, subjects, as_of)
        load.start()
        time.sleep(rng.uniform(0.3, 2.0))
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        load.join()
        decisions += load.decisions
        records += load.records
    assert len(decisions) > 100 and len(records) > 40, "each life was under load"
    # Shown with `pytest -s`; recorded in benchmarks/README.md.
    print(f"\n{ROUNDS} kills: {len(decisions)} decisions and {len(records)} records acknowledged")

    verify_log_as_a_user(data_dir, timeout=300)
    with DecisionLog(data_dir / "audit") as log:
        logged = {entry.body["decision_id"] for entry in log.entries()}
    assert [d for d in decisions if d not in logged] == []
    with duckdb.connect(str(data_dir / "store.duckdb")) as con:
        stored = {
            row[0]
            for row in con.execute(
                "SELECT record_id FROM public_record WHERE record_id LIKE 'CR-%'"
            ).fetchall()
        }
    assert [r for r in records if r not in stored] == []

    last = ServerProcess(data_dir)  # and it serves again after the tenth kill
    try:
        last.wait_serving(120)
    finally:
        assert last.stop() == 0
