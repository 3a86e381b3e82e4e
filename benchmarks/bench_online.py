"""Online serving figures, measured side by side in one run (issue #5).

Each server runs in its own process, the client in this one (so they do not share a GIL;
on this 2-core machine they do share the cores). Measured:

* the ceiling: a bare grpc server whose Score handler returns a constant ScoreResponse,
  in both flavours (sync thread pool, asyncio), with an asyncio client keeping 64 calls in
  flight;
* the real server (asyncio, all interceptors: auth, quota, errors, logs, metrics; every
  decision appended to the hash-chained decision log before it is answered) under the
  same client: Score calls per second and its ratio to the bare server of its flavour
  (and to the bare sync one), with the decision log fsynced (the default), written
  without fsync, and off (requests use the post-loan purpose, which is not recorded as
  an inquiry). The bare servers stay up all along and are measured again in each of
  ``--rounds`` rounds beside the real one; figures and ratios are the rounds' medians;
* sequential Score latency p50 / p90 / p99 (one call at a time, sync client), and with
  the log fsynced, the data directory's fsync latency for a 2 KB append right after it
  (the storage's part, which moves with the host's disk load);
* ScoreStream decisions per second with 1, 4 and 16 concurrent streams (``--streams``),
  on the bare servers (whose handler answers each request with the constant) and on the
  real one with the decision log fsynced.

    .venv/bin/python benchmarks/bench_online.py --data-dir var --out benchmarks/results/online.json

Without a prepared data directory, the demo province (``credit-risk serve --demo``'s) is
built first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import grpc

from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc

SCORE = "/creditrisk.v1.CreditRisk/Score"


# -- servers (run in child processes) ---------------------------------------------------------


def _constant_response() -> bytes:
    response = credit_risk_pb2.ScoreResponse(
        decision_id="01M8BFWFS2AF92V8W87JXZ4FJ5",
        score=637,
        probability_of_default=0.0054,
        grade=common_pb2.GRADE_B,
        model_version="20261126T083450Z-de8bea61",
        features_as_of="2026-06-30",
        warning_rules_version="fc67f20123db20ad",
        request_id="",
    )
    response.decided_at.GetCurrentTime()
    return response.SerializeToString()


def _bare_handlers(payload: bytes) -> dict[str, grpc.RpcMethodHandler]:
    def score(request: bytes, context: Any) -> bytes:
        return payload

    def stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for _ in requests:
            yield payload

    return {
        "Score": grpc.unary_unary_rpc_method_handler(score),
        "ScoreStream": grpc.stream_stream_rpc_method_handler(stream),
    }


def _register_bare(server: Any, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
    """As the real server registers its methods (generic and registered)."""
    name = "creditrisk.v1.CreditRisk"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def _serve_bare_sync(port_queue: Any, stop: Any, workers: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = grpc.server(ThreadPoolExecutor(max_workers=workers))
    _register_bare(server, _bare_handlers(_constant_response()))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    port_queue.put(port)
    stop.wait()
    server.stop(0)


def _serve_bare_asyncio(port_queue: Any, stop: Any, workers: int) -> None:
    payload = _constant_response()

    async def main() -> None:
        server = grpc.aio.server()

        async def score(request: bytes, context: Any) -> bytes:
            return payload

        async def stream(requests: Any, context: Any) -> Any:
            async for _ in requests:
                yield payload

        _register_bare(
            server,
            {
                "Score": grpc.unary_unary_rpc_method_handler(score),
                "ScoreStream": grpc.stream_stream_rpc_method_handler(stream),
            },
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop(0)

    asyncio.run(main())


def _serve_real(
    port_queue: Any, stop: Any, data_dir: str, workers: int, log: str = "fsync"
) -> None:
    """The real server; ``log``: "fsync" (the default service), "write" (the decision log
    without fsync), or "off" (no decision log: for this comparison only, the service has
    no such setting)."""
    from service.logs import configure_logging
    from service.server import CreditRiskServer
    from settings import load_settings

    # The call log is part of the path measured; it goes where nobody reads it.
    configure_logging("INFO", open(os.devnull, "w"))  # noqa: SIM115 - lives with the process
    settings = load_settings(
        data_dir=Path(data_dir),
        server={"port": 0, "metrics_port": 0, "workers": workers},
        audit={"fsync": log == "fsync"},
    )
    server = CreditRiskServer(settings)
    server.start()
    server.load_and_serve()
    assert server.runtime is not None
    if log == "off":
        server.runtime.scorer.decision_log = None
    while not server.runtime.refresher.caught_up():  # steady state: reasons, answer parts
        time.sleep(0.2)
    port_queue.put(server.port)
    stop.wait()
    server.stop(0)


class ServerProcess:
    def __init__(self, target: Any, *args: Any) -> None:
        context = mp.get_context("spawn")
        self.stop = context.Event()
        queue = context.Queue()
        self.process = context.Process(target=target, args=(queue, self.stop, *args))
        self.process.start()
        while True:  # the child may take minutes to load; fail at once if it dies
            try:
                self.port = int(queue.get(timeout=1))
                break
            except Empty:
                if not self.process.is_alive():
                    raise RuntimeError(f"server process exited ({self.process.exitcode})") from None

    def close(self) -> None:
        self.stop.set()
        self.process.join(30)


# -- clients ------------------------------------------------------------------------------------


def _requests(subjects: list[str], n: int) -> list[credit_risk_pb2.ScoreRequest]:
    return [
        credit_risk_pb2.ScoreRequest(
            subject=common_pb2.Subject(uscc=subjects[i % len(subjects)]),
            purpose=common_pb2.PURPOSE_POST_LOAN_MANAGEMENT,
        )
        for i in range(n)
    ]


def concurrent_rate(port: int, key: str, requests: list[Any], in_flight: int = 64) -> float:
    """Calls per second with ``in_flight`` calls outstanding (asyncio client)."""

    async def run() -> float:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            metadata = (("authorization", f"Bearer {key}"),)
            for request in requests[:200]:  # warm-up
                await stub.Score(request, metadata=metadata)
            position = 0

            async def worker() -> None:
                nonlocal position
                while position < len(requests):
                    request = requests[position]
                    position += 1
                    await stub.Score(request, metadata=metadata)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            return len(requests) / (time.perf_counter() - started)

    return asyncio.run(run())


def sequential_latency(port: int, key: str, requests: list[Any]) -> dict[str, float]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
        metadata = (("authorization", f"Bearer {key}"),)
        for request in requests[:200]:
            stub.Score(request, metadata=metadata)
        times = []
        for request in requests:
            started = time.perf_counter()
            stub.Score(request, metadata=metadata)
            times.append((time.perf_counter() - started) * 1000)
    quantiles = statistics.quantiles(times, n=100)
    return {
        "p50_ms": round(quantiles[49], 3),
        "p90_ms": round(quantiles[89], 3),
        "p99_ms": round(quantiles[98], 3),
        "calls": len(times),
    }


def stream_rate(port: int, key: str, requests: list[Any], streams: int = 1) -> float:
    """Decisions per second over ``streams`` concurrent ScoreStream calls."""

    async def run() -> float:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            metadata = (("authorization", f"Bearer {key}"),)
            share = len(requests) // streams

            async def one(part: list[Any]) -> int:
                call = stub.ScoreStream(iter(part), metadata=metadata)
                count = 0
                async for _ in call:
                    count += 1
                return count

            await one(requests[:500])  # warm-up
            started = time.perf_counter()
            counts = await asyncio.gather(
                *(one(requests[i * share : (i + 1) * share]) for i in range(streams))
            )
            return sum(counts) / (time.perf_counter() - started)

    return asyncio.run(run())


def fsync_latency(directory: Path, appends: int = 300) -> dict[str, float]:
    """p50 / p90 ms of fsyncing a 2 KB append (a decision-log entry's size) in
    ``directory``: the storage's share of a sequential Score with the log fsynced, which
    moves with the host's disk load."""
    probe = directory / "fsync-probe.tmp"
    times = []
    descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(appends):
            os.write(descriptor, b"x" * 2048)
            started = time.perf_counter()
            os.fsync(descriptor)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(descriptor)
        probe.unlink()
    quantiles = statistics.quantiles(times, n=10)
    return {"p50_ms": round(quantiles[4], 3), "p90_ms": round(quantiles[8], 3)}


def streams_rates(port: int, key: str, requests: list[Any], counts: list[int]) -> dict[str, int]:
    """Decisions per second with each number of concurrent streams (keyed by the number)."""
    return {str(count): round(stream_rate(port, key, requests, streams=count)) for count in counts}


# -- the run ------------------------------------------------------------------------------------


def _prepare(data_dir: Path) -> tuple[str, list[str]]:
    from service.demo import prepare_demo
    from settings import load_settings

    settings = load_settings(data_dir=data_dir)
    result = prepare_demo(settings, echo=print)
    import duckdb

    with duckdb.connect(str(settings.store_path), read_only=True) as con:
        subjects = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT uscc FROM legal_entity WHERE established_on <= ? ORDER BY uscc",
                [result.as_of],
            ).fetchall()
        ]
    return result.keys["demo-lender"], subjects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--sequential", type=int, default=5_000)
    parser.add_argument("--stream-items", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="Score measurements of each server (medians)"
    )
    parser.add_argument(
        "--streams",
        default="1,4,16",
        help="ScoreStream calls open at once, comma-separated (each measured on its own)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    stream_counts = [int(count) for count in args.streams.split(",")]

    key, subjects = _prepare(args.data_dir)
    requests = _requests(subjects, args.calls)
    stream_requests = _requests(subjects, args.stream_items)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
        },
        "subjects": len(subjects),
        "in_flight": 64,
    }

    # The bare servers stay up for the whole run: each round measures them beside the real
    # server, so a ratio compares calls made minutes (not tens of minutes) apart on a
    # shared machine whose speed drifts; the figures are the medians of the rounds.
    bare_servers = {
        "sync": ServerProcess(_serve_bare_sync, args.workers),
        "asyncio": ServerProcess(_serve_bare_asyncio, args.workers),
    }
    try:
        bare: dict[str, dict[str, Any]] = {}
        for flavour, server in bare_servers.items():
            concurrent_rate(server.port, key, requests)  # warm-up: steady state, not start-up
            bare[flavour] = {
                "sequential": sequential_latency(server.port, key, requests[: args.sequential]),
                "stream_items_per_s": streams_rates(
                    server.port, key, stream_requests, stream_counts
                ),
                "score_calls_per_s_rounds": [],
            }
        results["bare"] = bare
        results["rounds"] = args.rounds
        results["real_asyncio"] = {}
        for log in ("fsync", "write", "off"):
            server = ServerProcess(_serve_real, str(args.data_dir), args.workers, log)
            try:
                concurrent_rate(server.port, key, requests)  # warm-up (first calls run slower)
                rounds: dict[str, list[float]] = {"rate": [], "asyncio": [], "sync": []}
                for _ in range(args.rounds):
                    ceiling = {
                        flavour: concurrent_rate(bare_server.port, key, requests)
                        for flavour, bare_server in bare_servers.items()
                    }
                    real_rate = concurrent_rate(server.port, key, requests)
                    for flavour, rate in ceiling.items():
                        bare[flavour]["score_calls_per_s_rounds"].append(round(rate))
                        rounds[flavour].append(real_rate / rate)
                    rounds["rate"].append(real_rate)
                real: dict[str, Any] = {
                    "score_calls_per_s": round(statistics.median(rounds["rate"])),
                    "score_calls_per_s_rounds": [round(rate) for rate in rounds["rate"]],
                    "ratio_to_bare_asyncio": round(statistics.median(rounds["asyncio"]), 3),
                    "ratio_to_bare_asyncio_rounds": [round(r, 3) for r in rounds["asyncio"]],
                    "ratio_to_bare_sync": round(statistics.median(rounds["sync"]), 3),
                    "sequential": sequential_latency(server.port, key, requests[: args.sequential]),
                }
                if log == "fsync":
                    # The disk's part of that latency, measured just after it.
                    real["fsync_2kb"] = fsync_latency(args.data_dir)
                    real["stream_items_per_s"] = streams_rates(
                        server.port, key, stream_requests, stream_counts
                    )
            finally:
                server.close()
            print("real, decision log", log, real, flush=True)
            results["real_asyncio"][f"log_{log}"] = real
    finally:
        for bare_server in bare_servers.values():
            bare_server.close()
    for figures in bare.values():
        figures["score_calls_per_s"] = round(statistics.median(figures["score_calls_per_s_rounds"]))
    results["flavour"] = {
        "chosen": "asyncio",
        "faster_bare": max(bare, key=lambda f: bare[f]["score_calls_per_s"]),
        "sync_over_asyncio": round(
            bare["sync"]["score_calls_per_s"] / bare["asyncio"]["score_calls_per_s"], 2
        ),
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
