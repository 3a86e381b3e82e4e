"""Soak: minutes of mixed traffic against a real server in another process (issue #9).

The server runs on a copy of a prepared data directory (the demo province); this process
drives it with every kind of call at once: Score and GetWarnings callers, ScoreStream
batches, a reporter submitting records, a lender changing its watchlist and holding a
WatchAlerts stream open, and a regulator reading the decision log (GetDecision,
ListDecisions, VerifyLog over recent entries, ReplayDecision). It records every status
code by method (anything outside the documented ones is an error), latency percentiles by
method, and the server's resident memory at the start and the end (sampled throughout).

    .venv/bin/python benchmarks/soak.py --data-dir var --minutes 5 \\
        --out benchmarks/results/soak.json          # or: make soak
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
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_monitoring import _prepare, _serve  # a sibling script
from bench_online import ServerProcess

from creditrisk.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
)

DOCUMENTED = {
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "UNAUTHENTICATED",
}
POST_LOAN = common_pb2.PURPOSE_POST_LOAN_MANAGEMENT


def _memory_probe(runtime: Any, stop: Any, probe: str) -> None:
    """In the server process: every 10 s, append what holds its memory to ``probe``:
    DuckDB's buffers by tag and the count of Python objects (the commonest kinds)."""
    import gc

    with open(probe, "a", encoding="utf-8") as out, runtime.store.cursor() as cursor:
        while not stop.wait(10):
            rows = cursor.query(
                "SELECT tag, memory_usage_bytes FROM duckdb_memory() WHERE memory_usage_bytes > 0"
            )
            duck = {tag: round(n / 2**20, 1) for tag, n in rows}
            objects = gc.get_objects()
            kinds = Counter(type(o).__name__ for o in objects).most_common(6)
            line = {"duckdb_mib": duck, "python_objects": len(objects), "most": kinds}
            del objects
            out.write(json.dumps(line) + "\n")
            out.flush()


def _serve_probed(port_queue: Any, stop: Any, data_dir: str, probe: str) -> None:
    """bench_monitoring's server, with :func:`_memory_probe` running beside it."""
    _serve(port_queue, stop, data_dir, lambda runtime: _memory_probe(runtime, stop, probe))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Traffic:
    def __init__(self, channel: grpc.Channel, keys: dict[str, str], until: float) -> None:
        self.credit = credit_risk_pb2_grpc.CreditRiskStub(channel)
        self.records = records_pb2_grpc.RecordsStub(channel)
        self.audit = audit_pb2_grpc.AuditStub(channel)
        self.meta = {role: (("authorization", f"Bearer {key}"),) for role, key in keys.items()}
        self.until = until
        self.codes: dict[str, Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.decisions: list[str] = []
        self.alerts = 0
        self.lock = threading.Lock()

    def call(self, method: str, action: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            answer = action()
            code = "OK"
        except grpc.RpcError as err:
            answer, code = None, err.code().name
        with self.lock:
            self.codes[method][code] += 1
            self.latency[method].append(time.perf_counter() - started)
        return answer

    def running(self) -> bool:
        return time.monotonic() < self.until


def _score(t: Traffic, subjects: list[str], seed: int) -> None:
    rng = random.Random(seed)
    while t.running():
        subject = common_pb2.Subject(uscc=rng.choice(subjects))
        if rng.random() < 0.8:
            answer = t.call(
                "Score",
                lambda s=subject: t.credit.Score(
                    credit_risk_pb2.ScoreRequest(
                        subject=s, purpose=POST_LOAN, explain=rng.random() < 0.3
                    ),
                    metadata=t.meta["lender"],
                ),
            )
            if answer is not None and rng.random() < 0.01:
                with t.lock:
                    t.decisions.append(answer.decision_id)
        else:
            t.call(
                "GetWarnings",
                lambda s=subject: t.credit.GetWarnings(
                    credit_risk_pb2.WarningsRequest(subject=s, purpose=POST_LOAN),
                    metadata=t.meta["agency"],
                ),
            )


def _stream(t: Traffic, subjects: list[str]) -> None:
    rng = random.Random(3)
    while t.running():
        requests = [
            credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(uscc=rng.choice(subjects)), purpose=POST_LOAN
            )
            for _ in range(500)
        ]
        t.call(
            "ScoreStream",
            lambda r=requests: list(t.credit.ScoreStream(iter(r), metadata=t.meta["agency"])),
        )


def _report(t: Traffic, subjects: list[str], as_of: date) -> None:
    rng = random.Random(5)
    n = 0
    while t.running():
        rows = []
        for _ in range(50):
            n += 1
            rows.append(
                records_pb2.Row(
                    fields={
                        "record_id": f"SOAK-{n}",
                        "kind": rng.choice(["administrative_penalty", "court_judgment"]),
                        "subject_type": "entity",
                        "subject_id": rng.choice(subjects),
                        "event_date": as_of.isoformat(),
                        "amount": f"{rng.randint(1, 500_000)}.00",
                        "status": "active",
                        "reported_at": f"{as_of.isoformat()}T12:00:00",
                    }
                )
            )
        batch = records_pb2.RecordBatch(table=records_pb2.RECORD_TABLE_PUBLIC_RECORD, rows=rows)
        t.call(
            "SubmitRecords",
            lambda b=batch: t.records.SubmitRecords(iter([b]), metadata=t.meta["reporter"]),
        )
        time.sleep(0.5)


def _watch(t: Traffic, subjects: list[str]) -> None:
    rng = random.Random(9)

    def items(chosen: list[str]) -> credit_risk_pb2.WatchlistRequest:
        return credit_risk_pb2.WatchlistRequest(
            subjects=[
                credit_risk_pb2.WatchedSubject(
                    subject=common_pb2.Subject(uscc=u), reference=f"loan-{u}"
                )
                for u in chosen
            ]
        )

    # A portfolio of 2,000 that turns over: 20 subjects in and the previous 20 out each
    # second, so the watchlist keeps its size (a growing one would hide a leak).
    book = rng.sample(subjects, 2_000)
    t.call("Watch", lambda: t.credit.Watch(items(book), metadata=t.meta["lender"]))
    stream = t.credit.WatchAlerts(credit_risk_pb2.WatchRequest(), metadata=t.meta["lender"])

    def read() -> None:
        try:
            for _ in stream:
                t.alerts += 1
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.CANCELLED:
                t.codes["WatchAlerts"][err.code().name] += 1

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    last: list[str] = []
    while t.running():
        time.sleep(1.0)
        fresh = rng.sample(subjects, 20)
        t.call("Watch", lambda f=fresh: t.credit.Watch(items(f), metadata=t.meta["lender"]))
        t.call("Unwatch", lambda o=last: t.credit.Unwatch(items(o), metadata=t.meta["lender"]))
        last = [u for u in fresh if u not in book]
    stream.cancel()
    reader.join(5)
    t.codes["WatchAlerts"]["OK"] += 1


def _regulate(t: Traffic) -> None:
    meta = (("authorization", t.meta["regulator"][0][1]),)
    rounds = 0
    while t.running():
        time.sleep(2.0)
        rounds += 1
        with t.lock:
            recent = t.decisions[-5:]
        for decision in recent:
            t.call(
                "Audit.GetDecision",
                lambda d=decision: t.audit.GetDecision(
                    audit_pb2.GetDecisionRequest(decision_id=d), metadata=meta
                ),
            )
        t.call(
            "Audit.ListDecisions",
            lambda: list(
                t.audit.ListDecisions(
                    audit_pb2.ListDecisionsRequest(client="demo-lender", limit=200),
                    metadata=meta,
                )
            ),
        )
        if recent and rounds % 5 == 0:
            t.call(
                "Audit.ReplayDecision",
                lambda d=recent[-1]: t.audit.ReplayDecision(
                    audit_pb2.ReplayDecisionRequest(decision_id=d), metadata=meta
                ),
            )
        if rounds % 15 == 0:
            t.call(
                "Audit.VerifyLog",
                lambda: t.audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=meta),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        work = Path(scratch) / "data"
        keys, as_of, entities, _ = _prepare(args.data_dir, work)
        roles = {
            role: keys[f"demo-{role}"] for role in ("lender", "agency", "reporter", "regulator")
        }
        probe = Path(scratch) / "probe.jsonl"
        server = ServerProcess(_serve_probed, str(work), str(probe))
        pid = server.process.pid
        rss = [(0.0, _rss_kib(pid))]
        started = time.monotonic()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                traffic = Traffic(channel, roles, started + args.minutes * 60)
                workers = [
                    threading.Thread(target=_score, args=(traffic, entities, n)) for n in range(3)
                ] + [
                    threading.Thread(target=_stream, args=(traffic, entities)),
                    threading.Thread(target=_report, args=(traffic, entities, as_of)),
                    threading.Thread(target=_watch, args=(traffic, entities)),
                    threading.Thread(target=_regulate, args=(traffic,)),
                ]
                for worker in workers:
                    worker.start()
                while traffic.running():
                    time.sleep(10)
                    rss.append((round(time.monotonic() - started), _rss_kib(pid)))
                for worker in workers:
                    worker.join(120)
                rss.append((round(time.monotonic() - started), _rss_kib(pid)))
        finally:
            server.close()
        probes = [json.loads(line) for line in probe.read_text().splitlines()]
        shutil.rmtree(work, ignore_errors=True)

    undocumented = {
        method: {code: n for code, n in codes.items() if code not in DOCUMENTED}
        for method, codes in traffic.codes.items()
    }
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "minutes": args.minutes,
        "subjects": len(entities),
        "calls": {method: dict(codes) for method, codes in sorted(traffic.codes.items())},
        "undocumented": {m: c for m, c in undocumented.items() if c},
        "alerts_received": traffic.alerts,
        "latency_ms": {
            method: {
                "p50": round(statistics.median(values) * 1000, 2),
                "p90": round(sorted(values)[int(0.9 * (len(values) - 1))] * 1000, 2),
                "p99": round(sorted(values)[int(0.99 * (len(values) - 1))] * 1000, 2),
            }
            for method, values in sorted(traffic.latency.items())
        },
        "server_memory_probe": {"first": probes[:1], "last": probes[-1:]},
        "server_rss_mib": {
            "start": round(rss[0][1] / 1024, 1),
            "end": round(rss[-1][1] / 1024, 1),
            "samples": [(at, round(kib / 1024, 1)) for at, kib in rss],
        },
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if results["undocumented"]:
        raise SystemExit("undocumented status codes: see 'undocumented'")


if __name__ == "__main__":
    main()
