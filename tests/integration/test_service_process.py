"""The server as a user runs it: `credit-risk serve` in its own process, the `score` and
`clients` commands against it, and a SIGTERM that drains the calls in flight."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest
from conftest import ServiceData, bearer

from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc

BIN = Path(sys.executable).parent


class ServerProcess:
    def __init__(self, data_dir: Path) -> None:
        env = {**os.environ, "CREDIT_RISK_SERVER__METRICS_PORT": "0"}
        self.process = subprocess.Popen(
            [str(BIN / "credit-risk"), "serve", "--port", "0", "--data-dir", str(data_dir)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._serving = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,))
        self._reader.start()
        self.port = 0

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.append(line)
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
            if line.startswith("SERVING on"):
                self._serving.set()

    def wait_serving(self, timeout: float = 60) -> None:
        assert self._serving.wait(timeout), "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._reader.join(5)
        return code


def verify_log_as_a_user(data_dir: Path, *, timeout: float) -> None:
    """`credit-risk audit verify` in its own process, as an operator runs it after a crash:
    exit status 0 and an intact chain."""
    verified = subprocess.run(
        [str(BIN / "credit-risk"), "audit", "verify", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


@pytest.fixture
def server_process(service_data: ServiceData, tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    shutil.copytree(service_data.pristine, data_dir)
    server = ServerProcess(data_dir)
    try:
        server.wait_serving()
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def _uscc(data_dir: Path) -> str:
    import duckdb

    with duckdb.connect(str(data_dir / "store.duckdb"), read_only=True) as con:
        row = con.execute("SELECT min(uscc) FROM legal_entity").fetchone()
    assert row is not None
    return str(row[0])


def test_score_and_clients_commands_against_a_running_server(
    server_process: ServerProcess, service_data: ServiceData, tmp_path: Path
) -> None:
    uscc = _uscc(service_data.pristine)
    target = f"127.0.0.1:{server_process.port}"
    env = {**os.environ, "CREDIT_RISK_API_KEY": service_data.keys["lender"]}
    scored = subprocess.run(
        [str(BIN / "credit-risk"), "score", "--target", target, "--uscc", uscc, "--explain"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert scored.returncode == 0, scored.stderr
    answer = json.loads(scored.stdout)
    assert 300 <= answer["score"] <= 900 and answer["grade"].startswith("GRADE_")
    assert len(answer["decision_id"]) == 26

    refused = subprocess.run(
        [str(BIN / "credit-risk"), "score", "--target", target, "--uscc", "91330106MA2ABCDE1X"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1
    problem = json.loads(refused.stderr)["error"]
    assert problem["code"] == "INVALID_ARGUMENT"
    assert problem["field_violations"][0]["field"] == "subject.uscc"

    data_dir = tmp_path / "data"
    added = subprocess.run(
        [
            str(BIN / "credit-risk"),
            "clients",
            "add",
            "bank-7",
            "--role",
            "lender",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("crk_") and " " not in key
    assert key not in (data_dir / "clients.json").read_text()
    time.sleep(1.2)  # the server re-reads the clients file at most once a second
    with grpc.insecure_channel(target) as channel:
        stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
        response = stub.Score(
            credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(uscc=uscc), purpose=common_pb2.PURPOSE_LOAN_APPROVAL
            ),
            metadata=bearer(key),
        )
    assert response.score == answer["score"]
    assert server_process.stop() == 0


def test_sigterm_drains_calls_in_flight(
    server_process: ServerProcess, service_data: ServiceData
) -> None:
    uscc = _uscc(service_data.pristine)
    sent_first = threading.Event()
    total = 20

    def slow_requests() -> Iterator[credit_risk_pb2.ScoreRequest]:
        for i in range(total):
            yield credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(uscc=uscc),
                purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
                request_id=f"drain-{i}",
            )
            sent_first.set()
            time.sleep(0.05)

    with grpc.insecure_channel(f"127.0.0.1:{server_process.port}") as channel:
        stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
        stream = stub.ScoreStream(slow_requests(), metadata=bearer(service_data.keys["lender"]))
        answers = [next(stream)]
        server_process.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Score(
                credit_risk_pb2.ScoreRequest(
                    subject=common_pb2.Subject(uscc=uscc),
                    purpose=common_pb2.PURPOSE_LOAN_APPROVAL,
                ),
                metadata=bearer(service_data.keys["lender"]),
                timeout=5,
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        answers.extend(stream)
    assert [a.request_id for a in answers] == [f"drain-{i}" for i in range(total)]
    assert all(not a.HasField("error") for a in answers)
    assert server_process.stop() == 0
    log = "".join(server_process.lines)
    assert "stopping: draining" in log and "stopped" in log
    calls = [json.loads(line) for line in server_process.lines if line.startswith("{")]
    streams = [c for c in calls if c.get("method", "").endswith("/ScoreStream")]
    assert streams and streams[0]["status"] == "OK"


def test_serve_on_a_port_in_use_says_so(
    server_process: ServerProcess, service_data: ServiceData, tmp_path: Path
) -> None:
    data_dir = tmp_path / "second"
    shutil.copytree(service_data.pristine, data_dir)
    refused = subprocess.run(
        [
            str(BIN / "credit-risk"),
            "serve",
            *("--data-dir", str(data_dir), "--port", str(server_process.port)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 1, refused.stderr
    assert f"cannot listen on 127.0.0.1:{server_process.port}" in refused.stderr
    assert "Traceback" not in refused.stderr
