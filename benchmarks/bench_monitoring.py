"""Credit monitoring figures (issue #8): SubmitRecords throughput and record-to-alert latency.

The real server runs in its own process on a copy of a prepared data directory (the demo
province of ``credit-risk serve --demo``, 50k subjects); the clients run in this one.

* throughput: a reporter streams public records (new listings about random subjects,
  reported on the served as-of day, so every one changes features and flags) in batches;
  records per second until the SubmitRecords call is answered (every batch durable in the
  store), and until the refresh of every touched subject and its related parties is
  served (the refresh queue drained, seen as the last subject's new flag through Score);
* latency: a lender watches companies and keeps a WatchAlerts stream open; one new
  dishonest-debtor listing at a time is submitted for a watched company, and the time from
  sending the record to receiving the alert is measured (p50 / p90 / p99).

    .venv/bin/python benchmarks/bench_monitoring.py --data-dir /tmp/bench-var \\
        --out benchmarks/results/monitoring.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from queue import Queue
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_online import ServerProcess

from creditrisk.v1 import (
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

KINDS = ("enforcement", "court_judgment", "administrative_penalty", "tax_violation")


def _serve(
    port_queue: Any, stop: Any, data_dir: str, beside: Callable[[Any], None] | None = None
) -> None:
    """The real server in this (child) process, once every decision has its reasons;
    ``beside(runtime)``, when given, runs in a thread next to it (the soak's probe)."""
    from service.logs import configure_logging
    from service.server import CreditRiskServer
    from settings import load_settings

    configure_logging("INFO", open(os.devnull, "w"))  # noqa: SIM115 - lives with the process
    settings = load_settings(data_dir=Path(data_dir), server={"port": 0, "metrics_port": None})
    server = CreditRiskServer(settings)
    server.start()
    server.load_and_serve()
    assert server.runtime is not None
    while not server.runtime.refresher.caught_up():  # steady state: reasons, answer parts
        time.sleep(0.2)
    if beside is not None:
        threading.Thread(target=beside, args=(server.runtime,), daemon=True).start()
    port_queue.put(server.port)
    stop.wait()
    server.stop(5)


def _prepare(source: Path, work: Path) -> tuple[dict[str, str], date, list[str], list[str]]:
    """Copy the prepared directory, issue keys, and pick subjects: every entity, and the
    entities with no dishonest-debtor listing (each will get one)."""
    import duckdb

    from service.demo import prepare_demo
    from settings import load_settings

    prepare_demo(load_settings(data_dir=source), echo=print)  # no-op when prepared
    shutil.copytree(source, work)
    result = prepare_demo(load_settings(data_dir=work), echo=lambda _: None)
    with duckdb.connect(str(work / "store.duckdb"), read_only=True) as con:
        entities = [r[0] for r in con.execute("SELECT DISTINCT uscc FROM legal_entity").fetchall()]
        listed = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT subject_key FROM public_record WHERE kind = 'dishonest_debtor'"
            ).fetchall()
        }
    assert result.as_of is not None
    clean = sorted(set(entities) - listed)
    return result.keys, result.as_of, sorted(entities), clean


def _row(uscc: str, record_id: str, kind: str, as_of: date) -> records_pb2.Row:
    return records_pb2.Row(
        fields={
            "record_id": record_id,
            "kind": kind,
            "subject_type": "entity",
            "subject_id": uscc,
            "event_date": as_of.isoformat(),
            "amount": "150000.00",
            "status": "active",
            "reported_at": f"{as_of.isoformat()}T12:00:00",
        }
    )


def throughput(
    channel: grpc.Channel,
    keys: dict[str, str],
    as_of: date,
    entities: list[str],
    rows: int,
    batch_rows: int,
) -> dict[str, Any]:
    records = records_pb2_grpc.RecordsStub(channel)
    credit = credit_risk_pb2_grpc.CreditRiskStub(channel)
    rng = random.Random(7)
    chosen = [rng.choice(entities) for _ in range(rows)]
    batches = [
        records_pb2.RecordBatch(
            batch_id=f"bench-{start}",
            table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
            rows=[
                _row(uscc, f"BENCH-{start + i}", KINDS[(start + i) % len(KINDS)], as_of)
                for i, uscc in enumerate(chosen[start : start + batch_rows])
            ],
        )
        for start in range(0, rows, batch_rows)
    ]
    meta = (("authorization", f"Bearer {keys['demo-reporter']}"),)
    started = time.perf_counter()
    summary = records.SubmitRecords(iter(batches), metadata=meta)
    acknowledged = time.perf_counter() - started
    assert summary.accepted == rows, summary
    # Served: the last subject's new enforcement flag is visible (the queue is FIFO by batch).
    last = chosen[-1]
    agency = (("authorization", f"Bearer {keys['demo-agency']}"),)
    while True:
        answer = credit.GetWarnings(
            credit_risk_pb2.WarningsRequest(
                subject=common_pb2.Subject(uscc=last),
                purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
            ),
            metadata=agency,
        )
        if any(e.record == f"BENCH-{rows - 1}" for w in answer.warnings for e in w.evidence):
            break
        time.sleep(0.05)
    served = time.perf_counter() - started
    return {
        "records": rows,
        "batch_rows": batch_rows,
        "subjects_touched": summary.subjects_refreshed,
        "acknowledged_seconds": round(acknowledged, 3),
        "records_per_second_acknowledged": round(rows / acknowledged),
        "served_seconds": round(served, 3),
        "records_per_second_served": round(rows / served),
    }


def latency(
    channel: grpc.Channel, keys: dict[str, str], as_of: date, clean: list[str], samples: int
) -> dict[str, Any]:
    credit = credit_risk_pb2_grpc.CreditRiskStub(channel)
    records = records_pb2_grpc.RecordsStub(channel)
    lender = (("authorization", f"Bearer {keys['demo-lender']}"),)
    reporter = (("authorization", f"Bearer {keys['demo-reporter']}"),)
    targets = clean[:samples]
    credit.Watch(
        credit_risk_pb2.WatchlistRequest(
            subjects=[
                credit_risk_pb2.WatchedSubject(subject=common_pb2.Subject(uscc=u), reference=u)
                for u in targets
            ]
        ),
        metadata=lender,
    )
    arrivals: Queue[tuple[float, credit_risk_pb2.Alert]] = Queue()
    stream = credit.WatchAlerts(
        credit_risk_pb2.WatchRequest(kinds=[credit_risk_pb2.ALERT_KIND_RAISED]), metadata=lender
    )

    def read() -> None:
        try:
            for alert in stream:
                arrivals.put((time.perf_counter(), alert))
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.0)  # the stream is open ("from now on")
    seconds = []
    for n, uscc in enumerate(targets):
        sent = time.perf_counter()
        records.SubmitRecords(
            iter(
                [
                    records_pb2.RecordBatch(
                        table=records_pb2.RECORD_TABLE_PUBLIC_RECORD,
                        rows=[_row(uscc, f"LAT-{n}", "dishonest_debtor", as_of)],
                    )
                ]
            ),
            metadata=reporter,
        )
        while True:
            arrived, alert = arrivals.get(timeout=30)
            if alert.subject.uscc == uscc and alert.warning.code == "W_DISHONEST_DEBTOR":
                break
        seconds.append(arrived - sent)
    stream.cancel()
    ms = sorted(s * 1000 for s in seconds)
    return {
        "samples": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch-rows", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as scratch:
        work = Path(scratch) / "data"
        keys, as_of, entities, clean = _prepare(args.data_dir, work)
        server = ServerProcess(_serve, str(work))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                results: dict[str, Any] = {
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "grpcio": grpc.__version__,
                    },
                    "subjects": len(entities),
                    "as_of": as_of.isoformat(),
                    "record_to_alert": latency(channel, keys, as_of, clean, args.samples),
                    "submit_records": throughput(
                        channel, keys, as_of, entities, args.records, args.batch_rows
                    ),
                }
        finally:
            server.close()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
