"""One chunk of a batch job, from its feature rows to its log entries and output rows,
and the local engine's worker processes that make them.

What a chunk needs is :class:`ChunkWork` (its feature rows, the warning-rule rows and the
person attributes of its subjects) and the job's :class:`ChunkJob`; what it gives back is
a :class:`DecidedChunk`: its decision ids, its log entries already in canonical bytes, its
output rows and its counts. The driver (:mod:`service.batch`) only logs those entries
(those a killed run had not logged), writes the rows and checkpoints.

Why processes: once TreeSHAP was cut to a fifth, a chunk's Python (subject decisions, log
entries, output rows: ~50 us a subject) held the driver's one GIL for longer than the
chunk's TreeSHAP took, and the 1M job ran at 1.5 of the 2 cores. Worker processes each
have their own; the driver is left with the log writer, the part files and checkpoints.
Workers are spawned (the driver runs DuckDB and polars thread pools, which a fork would
copy mid-flight), ignore Ctrl-C (the driver handles it, then stops them), and exit on
their own when the driver dies (``kill -9``), so a killed job leaves no process behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from audit.chain import CanonicalBody
from audit.entries import decision_entry_bytes, person_groups
from audit.ids import derived_decision_id
from features.pipeline import KEY, TYPE
from features.warnings import warning_catalog_hash
from models.data import feature_matrix
from models.decisions import SubjectDecision, flags_from_frame, subject_decisions
from models.model import Decision, RiskModel
from service.batch_output import output_frame

__all__ = [
    "CRASH_ENV",
    "ChunkJob",
    "ChunkWork",
    "DecidedChunk",
    "WorkerPool",
    "decide_chunk",
    "finish_decisions",
    "worker_model",
]


CRASH_ENV = "CREDIT_RISK_BATCH_CRASH"
"""Tests only: ``<point>:<chunk>`` kills a process (SIGKILL) at ``point`` of chunk number
``chunk``. The driver (:mod:`service.batch`): ``mid-log`` (half the chunk's entries
appended), ``after-log`` (all appended, no part file), ``after-part`` (part file written,
no checkpoint); and, with ``end`` for the chunk, at the final step: ``mid-combine``
(DuckDB output: the table created in the open transaction, not committed),
``after-combine`` (the output complete, the checkpoint not yet marked complete); with a
``:int`` suffix it sends SIGINT instead (Ctrl-C: to the process group when the process
leads one, as a terminal does, so that a LocalCluster's workers get it too). A worker:
``worker`` (the local engine's worker process deciding the chunk)."""


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one run of a job shares (sent to each worker with its chunk)."""

    as_of: date
    client: str
    purpose: str
    job_id: str
    started_ms: int  # the run's start: the time part of its decision ids
    secret: bytes  # the run's key for its decision ids (audit.ids.derived_decision_id)
    fairness_by_gender: bool
    data_dir: str
    model_version: str


@dataclass(frozen=True)
class ChunkWork:
    number: int
    features: pl.DataFrame  # the chunk's rows of the feature frame, in (type, key) order
    warnings: pl.DataFrame  # evaluate_warnings' rows of the chunk's subjects, in its order
    people: dict[str, tuple[Any, ...]]  # id_region, birth_date, gender of its persons


@dataclass(frozen=True)
class DecidedChunk:
    number: int
    ids: list[str]  # one per row, in row order
    entries: list[CanonicalBody]  # the log entry of each row, in row order
    table: pl.DataFrame  # the output rows (service.batch_output.OUTPUT_SCHEMA)
    grades: dict[str, int]
    warnings: dict[str, int]  # flags raised, by code
    first: tuple[str, str]  # (type, key) of the first and last rows
    last: tuple[str, str]


_MODELS: dict[tuple[str, str, int], RiskModel] = {}


def worker_model(data_dir: str, version: str, threads: int = 1) -> RiskModel:
    """The registered model ``version`` (hashes verified), loaded once per process. No
    compiled forest: batches are LightGBM's in every engine, whatever a chunk's size, so
    every engine gives the same decisions."""
    found = _MODELS.get((data_dir, version, threads))
    if found is None:
        found = RiskModel.load(Path(data_dir), version, batch_threads=threads, compiled=False)
        _MODELS[(data_dir, version, threads)] = found
    return found


def _groups(
    item: SubjectDecision, people: dict[str, tuple[Any, ...]], on: date, with_gender: bool
) -> dict[str, str] | None:
    if item.subject_type == "entity":
        return {"region": item.subject_key[2:4]}
    found = people.get(item.subject_key)
    if found is None:
        return None
    region, birth, gender = found
    return person_groups(region, birth, gender if with_gender else None, on)


def finish_decisions(
    job: ChunkJob,
    model: RiskModel,
    work: ChunkWork,
    decisions: Sequence[Decision] | None = None,
) -> DecidedChunk:
    """A chunk's decisions (with reasons, one per feature row; None: decided here, from the
    same feature matrix) made into its ids, log entries and output rows."""
    features = work.features
    matrix = feature_matrix(features)
    if decisions is None:
        decisions = model.decide_batch(matrix, explain=True)
    decided = subject_decisions(
        job.as_of,
        features[TYPE].to_list(),
        features[KEY].to_list(),
        matrix,
        decisions,
        flags_from_frame(work.warnings),
        explained=True,
    )
    ids = [derived_decision_id(job.started_ms, job.secret, item.subject_key) for item in decided]
    rules_version = warning_catalog_hash()[:16]
    now = datetime.now(UTC)
    entries = [
        decision_entry_bytes(
            decision_id=decision_id,
            decided_at=now,
            kind="batch",
            method="batch",
            client=job.client,
            purpose=job.purpose,
            authorization_id="",
            request_id=f"{job.job_id}:{work.number}",
            subject=item,
            model=model,
            warning_rules_version=rules_version,
            reasons_given=True,
            groups=_groups(item, work.people, now.date(), job.fairness_by_gender),
        )
        for decision_id, item in zip(ids, decided, strict=True)
    ]
    table = output_frame(decided, ids)
    return DecidedChunk(
        number=work.number,
        ids=ids,
        entries=entries,
        table=table,
        grades=dict(Counter(table["grade"].to_list())),
        warnings=dict(Counter(flag.code for item in decided for flag in item.warnings)),
        first=(decided[0].subject_type, decided[0].subject_key),
        last=(decided[-1].subject_type, decided[-1].subject_key),
    )


def decide_chunk(job: ChunkJob, work: ChunkWork, threads: int = 1) -> DecidedChunk:
    """Decide a chunk (TreeSHAP reasons included) and finish it: a worker's task."""
    if os.environ.get(CRASH_ENV) == f"worker:{work.number}":
        os.kill(os.getpid(), signal.SIGKILL)  # a worker killed (the OOM killer, say)
    return finish_decisions(job, worker_model(job.data_dir, job.model_version, threads), work)


def _orphan_watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(1)  # the driver is gone (kill -9): nobody will take this worker's results


def _start_worker(parent: int, data_dir: str, version: str, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    threading.Thread(target=_orphan_watch, args=(parent,), daemon=True).start()
    worker_model(data_dir, version, threads)  # loaded while the driver still prepares


def _started() -> None:
    """A task that only makes the pool start a worker (its initializer does the work)."""


class WorkerPool:
    """The local engine's ``workers`` spawned processes (default: one per core), each with
    the registered model ``version`` loaded. They start when the pool is made, so that
    their start (~2 s of imports and the model's load) overlaps the driver's feature
    build instead of delaying the first chunk; ``at_most``: no more than a job has chunks.
    Closing the pool stops them."""

    def __init__(
        self, data_dir: str, version: str, workers: int | None = None, at_most: int | None = None
    ) -> None:
        cores = os.cpu_count() or 1
        self.count = max(1, min(workers or cores, at_most or cores))
        self.threads = max(1, cores // self.count)  # LightGBM's threads in each worker
        self._pool = ProcessPoolExecutor(
            max_workers=self.count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(), data_dir, version, self.threads),
        )
        for _ in range(self.count):  # the pool spawns a worker per task while none idles
            self._pool.submit(_started)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decisions(self, job: ChunkJob, works: Sequence[ChunkWork]) -> Generator[DecidedChunk]:
        """Each chunk decided and finished by the workers, in chunk order, two per worker
        in flight (none idles while the caller logs); closed early (an interruption), the
        queued ones are dropped."""
        queued = iter(works)
        ahead: deque[Future[DecidedChunk]] = deque()
        try:
            for work in queued:
                ahead.append(self._pool.submit(decide_chunk, job, work, self.threads))
                if len(ahead) >= 2 * self.count:
                    break
            while ahead:
                chunk = ahead.popleft().result()
                following = next(queued, None)
                if following is not None:
                    ahead.append(self._pool.submit(decide_chunk, job, following, self.threads))
                yield chunk
        finally:
            for future in ahead:
                future.cancel()
