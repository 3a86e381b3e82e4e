"""Batch scoring (``credit-risk score-batch``): chunked, checkpointed, resumable.

A job scores every subject of the store (``--all``) or of a subject list as of one date:
features from :func:`features.pipeline.build` (the one definition training and the server
use), decisions with reasons from :meth:`models.model.RiskModel.decide_batch` (TreeSHAP:
~60 us a row, the bulk of the decisions' time), warning flags from
:func:`features.warning_eval.evaluate_warnings`. Rows are sorted by (type, key) and cut into
chunks of ``chunk_rows``; each chunk is decided, logged, written and checkpointed in turn.

Files, for ``--out P.parquet``: ``P.parquet.parts/checkpoint.json`` (the job's parameters
hash, its id, start time and secret, and every finished chunk with its subject range,
counts and the log sequence after it), ``P.parquet.parts/chunk-NNNNNN.parquet`` (a chunk's
rows), ``P.parquet.rejects.csv`` (bad lines of the subject list) and, at the end,
``P.parquet`` itself (the parts combined into a temporary file, then renamed). Every file
is replaced atomically (write a temporary, fsync, rename).

Or a DuckDB table (``BatchJob.table``; the CLI's ``--out D.duckdb [--table T]``): the same
chunks, checkpoint and Parquet parts, named after ``D.duckdb.T`` (``D.duckdb.T.parts/``,
``D.duckdb.T.rejects.csv``; so one database holds many jobs' tables), and only the final
step differs: the parts are loaded into ``T`` by one ``CREATE TABLE T AS SELECT * FROM
read_parquet([...])`` and a ``COMMENT ON TABLE`` naming the job's run (job id, start time,
as-of date), committed as one transaction: a kill leaves no table or the whole table, with
the columns and types of the Parquet file. The checkpoint is marked complete after the
commit; a resume that finds ``T`` with its run's comment takes it as done (killed between
the commit and the checkpoint), one with any other comment, or a ``T`` present before the
job (checked before any work), is someone else's table: the job refuses, never replacing
or adding to it. A job run again from scratch (parts removed) is another run, with other
decision ids, and so refuses the first run's table too. The records store is refused as
an output, whatever the format.

Exactly one audit entry per subject, whatever the interruption:

1. a chunk's entries are appended to the decision log *before* its part file and its
   checkpoint entry are written (a decision is never output without being logged);
2. decision ids are deterministic per (job, subject): the ULID layout with the job's start
   time and 80 bits of HMAC-SHA256(job secret, subject key)
   (:func:`audit.ids.derived_decision_id`); the secret is random and kept in the checkpoint;
3. on resume, only the first unfinished chunk can have been logged (chunks run in order), in
   whole or in part (a killed process leaves any prefix of a chunk's group commits; a torn
   last line is cut when the log reopens). Its ids are looked up in the log entries after
   the sequence recorded with the last finished chunk (or at the job's start): those found
   are not appended again, the others are. The part file is written from the decisions
   recomputed now, which equal the logged ones (same features, same model: the pipeline is
   bit-reproducible), apart from the entry's time.

A job is identified by its parameters (as-of date, subject list content or ``--all``, chunk
size, model version, catalog hash). Running the same command again resumes it; with other
parameters it refuses until the parts directory is removed. A finished job keeps its
checkpoint (its part files are deleted): running it again prints the summary and logs
nothing. The store is not snapshotted: records ingested between an interruption and the
resume would be seen by the chunks decided after it.

Engines (``BatchJob.engine``) differ only in where a chunk is decided: ``local`` in
``workers`` processes of its own (:mod:`service.batch_chunks`: each decides a chunk and
also makes its ids, log entries and output rows, so the driver's one GIL is not the
limit); ``dask`` (an existing scheduler) and ``dask-local`` (a LocalCluster of ``workers``
processes) decide them on a Dask cluster (:mod:`service.batch_dask`), the driver making
the entries and rows with the same :func:`service.batch_chunks.finish_decisions`. The
feature build, the warning rules, logging, part files, checkpoint and summary are the
driver's whatever the engine, and the engine is not part of the job's identity: a job
interrupted on one engine resumes on another, with the same ids. The model is loaded
without its compiled forest (batches are LightGBM's, whatever a chunk's size), so every
engine gives the same decisions. Worker processes are spawned, so a script that calls
:func:`run_batch` must guard its top level with ``if __name__ == "__main__":`` (as for
any spawned pool).
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import re
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audit.chain import fsync_directory
from audit.log import DecisionLog
from features.catalog import catalog_hash
from features.pipeline import KEY, TYPE, build
from features.sources import SharedCreditReads
from features.warning_eval import evaluate_warnings
from models.model import RiskModel
from records.runtime import make_pseudonymiser, open_store
from records.store import RecordStore, connect_database
from service.batch_chunks import (
    CRASH_ENV,
    ChunkJob,
    ChunkWork,
    DecidedChunk,
    WorkerPool,
    finish_decisions,
)
from service.batch_output import OUTPUT_SCHEMA
from service.subject_lists import read_subject_list
from settings import Settings

__all__ = [
    "CRASH_ENV",
    "ENGINES",
    "OUTPUT_SCHEMA",
    "BatchError",
    "BatchJob",
    "BatchResult",
    "Reject",
    "run_batch",
    "store_conflict",
    "table_name_problem",
]

CHECKPOINT = "checkpoint.json"
ENGINES = ("local", "dask", "dask-local")
_FORMAT = 1
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class BatchError(Exception):
    """A job that cannot run as asked (another job's parts or someone's table in the way)."""


@dataclass(frozen=True)
class Reject:
    line: int
    reason: str


@dataclass(frozen=True)
class BatchJob:
    as_of: date
    out: Path
    subjects_file: Path | None = None  # None: every subject of the store
    chunk_rows: int = 10_000
    client: str = "batch:cli"
    purpose: str = "credit_review"
    engine: str = "local"  # one of ENGINES
    scheduler: str | None = None  # engine "dask": the scheduler's address
    workers: int | None = None  # engines local, dask-local: worker processes (default: cores)
    table: str | None = None  # None: Parquet at ``out``; else this table of the DuckDB file ``out``


@dataclass
class BatchResult:
    summary: dict[str, Any]
    rejects: list[Reject] = field(default_factory=list)


Progress = Callable[[int], object]
Decider = Callable[[Sequence[ChunkWork]], Generator[DecidedChunk]]
"""An engine: each chunk decided (with reasons) and finished, in order, as wanted."""


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    temporary.replace(path)
    fsync_directory(path.parent)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    _atomic_write(path, lambda p: p.write_text(json.dumps(value, indent=1), encoding="utf-8"))


def _crash_point(point: str, chunk: int | str) -> None:
    wanted = os.environ.get(CRASH_ENV, "")
    if wanted == f"{point}:{chunk}":
        os.kill(os.getpid(), signal.SIGKILL)
    if wanted == f"{point}:{chunk}:int":  # Ctrl-C: a KeyboardInterrupt from here
        if os.getpgrp() == os.getpid():  # as a terminal does: to the whole process group
            os.killpg(os.getpgrp(), signal.SIGINT)
        else:
            signal.raise_signal(signal.SIGINT)


def _subjects(
    settings: Settings, job: BatchJob
) -> tuple[list[str] | None, list[int], list[Reject]]:
    if job.subjects_file is None:
        return None, [], []
    parsed = read_subject_list(job.subjects_file, make_pseudonymiser(settings))
    rejects = [Reject(problem.line, problem.message) for problem in parsed.problems]
    return parsed.keys, parsed.lines, rejects


def _person_attributes(store: RecordStore, frame: pl.DataFrame) -> dict[str, tuple[Any, ...]]:
    """id_region, birth_date and gender of the frame's persons (derived from the resident
    id at ingestion, so the same in every version of the record)."""
    persons = frame.filter(pl.col(TYPE) == "person")[KEY].to_list()
    if not persons:
        return {}
    rows = store.query(
        "SELECT DISTINCT person_key, id_region, birth_date, gender FROM natural_person "
        "WHERE person_key IN (SELECT unnest(?))",
        [persons],
    )
    return {row[0]: row[1:] for row in rows}


def run_batch(
    settings: Settings,
    job: BatchJob,
    progress: Progress | None = None,
    total: Progress | None = None,
) -> BatchResult:
    """Run (or resume) ``job``; see the module docstring. ``progress`` is called with the
    number of subjects each finished chunk (or skipped finished chunk) holds, ``total``
    once with the number of subjects to score (for a progress bar's ETA)."""
    with _collector_paused():
        return _run_batch(settings, job, progress, total)


def _run_batch(
    settings: Settings,
    job: BatchJob,
    progress: Progress | None,
    total: Progress | None,
) -> BatchResult:
    if job.chunk_rows < 1:
        raise BatchError("chunk_rows must be positive")
    if job.engine not in ENGINES:
        raise BatchError(f"unknown engine {job.engine!r}; one of: {', '.join(ENGINES)}")
    if job.engine == "dask" and not job.scheduler:
        raise BatchError("the dask engine needs a scheduler address")
    if job.table is not None and (problem := table_name_problem(job.table)):
        raise BatchError(f"table: {problem}")
    if problem := store_conflict(settings, job.out):
        raise BatchError(problem)
    if job.table is not None:  # before any work: never end a long job on someone's table
        _check_table(settings, job.out, job.table, _parts_dir(job) / CHECKPOINT)
    started = time.perf_counter()
    model = RiskModel.load(settings.data_dir, compiled=False)
    subjects = _subjects(settings, job)
    # The local engine's workers start now: their start overlaps the feature build. A
    # short subject list needs no more of them than it has chunks.
    pool = None
    if job.engine == "local":
        chunks = None if subjects[0] is None else -(-len(subjects[0]) // job.chunk_rows)
        pool = WorkerPool(str(settings.data_dir.resolve()), model.version, job.workers, chunks)
    with pool or nullcontext():
        return _scored(settings, job, model, subjects, pool, started, progress, total)


def _scored(
    settings: Settings,
    job: BatchJob,
    model: RiskModel,
    subjects: tuple[list[str] | None, list[int], list[Reject]],
    pool: WorkerPool | None,
    started: float,
    progress: Progress | None,
    total: Progress | None,
) -> BatchResult:
    base = _output_base(job)
    parts = _parts_dir(job)
    checkpoint_path = parts / CHECKPOINT
    keys, lines, rejects = subjects
    credit_reads = SharedCreditReads()  # the features' and the warning rules' one read
    with open_store(settings, read_only=True) as store:
        frame = build(
            store,
            job.as_of,
            keys,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
            credit_reads=credit_reads,
        ).sort(TYPE, KEY)
        found = set(frame[KEY].to_list())
        if total is not None:
            total(frame.height)
        if keys is not None:
            rejects += [
                Reject(line, "unknown subject: no records as of the date")
                for key, line in zip(keys, lines, strict=True)
                if key not in found
            ]
            rejects.sort(key=lambda r: r.line)
        people = _person_attributes(store, frame)
        warnings = evaluate_warnings(
            store,
            job.as_of,
            keys,
            retention_years=settings.features.retention_years,
            credit_reads=credit_reads,
        )
    del credit_reads  # 23M repayment months at 1M subjects
    gc.freeze()  # people and the rest built so far live to the end (_collector_paused)

    params = {
        "format": _FORMAT,
        "as_of": job.as_of.isoformat(),
        "subjects": "all"
        if keys is None
        else hashlib.sha256("\n".join(sorted(found)).encode()).hexdigest(),
        "chunk_rows": job.chunk_rows,
        "model_version": model.version,
        "catalog_hash": catalog_hash(),
        "client": job.client,
        "purpose": job.purpose,
    }
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    log = DecisionLog(
        settings.audit_log_path,
        segment_bytes=settings.audit.segment_bytes,
        fsync=settings.audit.fsync,
    )
    try:
        if checkpoint_path.exists():
            checkpoint = json.loads(checkpoint_path.read_text(encoding="utf-8"))
            if checkpoint["params_hash"] != params_hash:
                raise BatchError(
                    f"{parts} holds another job (other date, subjects, chunk size or model); "
                    "remove it or choose another --out"
                    + ("" if job.table is None else " or --table")
                )
        else:
            parts.mkdir(parents=True, exist_ok=True)
            checkpoint = {
                "params_hash": params_hash,
                "params": params,
                "job_id": params_hash[:16],
                "started_ms": time.time_ns() // 1_000_000,
                "secret": secrets.token_hex(16),
                "log_sequence_at_start": log.next_sequence,
                "chunks": [],
                "complete": False,
            }
            _write_json(checkpoint_path, checkpoint)
        chunk_job = ChunkJob(
            as_of=job.as_of,
            client=job.client,
            purpose=job.purpose,
            job_id=checkpoint["job_id"],
            started_ms=checkpoint["started_ms"],
            secret=bytes.fromhex(checkpoint["secret"]),
            fairness_by_gender=settings.audit.fairness_by_gender,
            data_dir=str(settings.data_dir.resolve()),
            model_version=model.version,
        )
        summary_extra = _run_chunks(
            job,
            frame,
            warnings,
            people,
            log,
            parts,
            checkpoint,
            progress,
            _decider(settings, job, model, chunk_job, parts, pool),
        )
    finally:
        log.close()
    _write_rejects(base, rejects)
    if not checkpoint["complete"]:
        if job.table is None:
            _combine(job.out, parts, checkpoint)
        else:
            _combine_table(settings, job.out, job.table, parts, checkpoint)
        _crash_point("after-combine", "end")
        checkpoint["complete"] = True
        _write_json(checkpoint_path, checkpoint)
        for chunk in checkpoint["chunks"]:
            (parts / chunk["file"]).unlink(missing_ok=True)
    output = {"format": "parquet", "path": str(job.out.absolute())}
    if job.table is not None:
        output = {"format": "duckdb", "database": str(job.out.absolute()), "table": job.table}
    summary = _summary(checkpoint, rejects, time.perf_counter() - started, summary_extra)
    return BatchResult({"output": output, **summary}, rejects)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection while a job runs. The job makes millions of
    objects that live to its end (person attributes, each chunk's share of them, at 1M
    subjects) and, per chunk, entries and rows that reference counting frees; the collector
    kept walking them all (15% of a 50k job when the driver still built the flags). The
    job freezes its long-lived objects once built and collects the young generation after
    each chunk, which catches any cycle a chunk made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _decider(
    settings: Settings,
    job: BatchJob,
    model: RiskModel,
    chunk_job: ChunkJob,
    parts: Path,
    pool: WorkerPool | None,
) -> Decider:
    if pool is not None:
        return lambda works: pool.decisions(chunk_job, works)

    def on_dask(works: Sequence[ChunkWork]) -> Generator[DecidedChunk]:
        from service.batch_dask import dask_decisions  # dask only when asked for

        decisions = dask_decisions(
            [(work.number, work.features) for work in works],
            data_dir=settings.data_dir,
            model_version=model.version,
            parts=parts,
            scheduler=job.scheduler if job.engine == "dask" else None,
            workers=job.workers,
        )
        with closing(decisions):
            for work in works:
                yield finish_decisions(chunk_job, model, work, next(decisions))

    return on_dask


def _chunk_works(
    frame: pl.DataFrame,
    warnings: pl.DataFrame,
    people: dict[str, tuple[Any, ...]],
    chunk_rows: int,
    first: int,
) -> list[ChunkWork]:
    """The chunks from number ``first`` on: each one's feature rows, and the warning rows
    (in their order: it ranks a subject's flags) and person attributes of its subjects."""
    number = "_chunk"
    chunk_of = frame.select(
        pl.col(KEY).alias("subject_key"), (pl.int_range(pl.len()) // chunk_rows).alias(number)
    )
    by_chunk = (
        warnings.with_row_index("_row")
        .join(chunk_of, on="subject_key", how="inner")
        .sort("_row")
        .drop("_row")
        .partition_by(number, as_dict=True, include_key=False, maintain_order=True)
    )
    empty = warnings.clear()
    works = []
    for start in range(first * chunk_rows, frame.height, chunk_rows):
        rows = frame.slice(start, chunk_rows)
        works.append(
            ChunkWork(
                number=start // chunk_rows,
                features=rows,
                warnings=by_chunk.get((start // chunk_rows,), empty),
                people={key: people[key] for key in rows[KEY].to_list() if key in people},
            )
        )
    return works


def _run_chunks(
    job: BatchJob,
    frame: pl.DataFrame,
    warnings: pl.DataFrame,
    people: dict[str, tuple[Any, ...]],
    log: DecisionLog,
    parts: Path,
    checkpoint: dict[str, Any],
    progress: Progress | None,
    decide: Decider,
) -> dict[str, Any]:
    done = len(checkpoint["chunks"])
    decided_rows = 0
    wait_seconds = 0.0
    if progress is not None:
        progress(min(frame.height, done * job.chunk_rows))
    works = []
    if not checkpoint["complete"]:
        works = _chunk_works(frame, warnings, people, job.chunk_rows, done)
    with closing(decide(works)) as decided:
        for work in works:
            tick = time.perf_counter()
            try:
                chunk = next(decided)
            except BrokenProcessPool as err:  # killed: by the OOM killer, most likely
                raise BatchError(
                    f"a worker process died while deciding chunk {work.number} (killed, or "
                    "out of memory?); the chunks before it are saved: run the same command "
                    "again to resume (--workers 1 needs less memory)"
                ) from err
            wait_seconds += time.perf_counter() - tick
            if chunk.number != work.number or chunk.table.height != work.features.height:
                raise RuntimeError(f"chunk {work.number} came back as another chunk")
            decided_rows += chunk.table.height
            _finish_chunk(log, parts, checkpoint, chunk)
            gc.collect(0)
            if progress is not None:
                progress(chunk.table.height)
    return {
        "engine": job.engine,
        "decided_this_run": decided_rows,
        "decide_seconds": round(wait_seconds, 3),
    }


def _finish_chunk(
    log: DecisionLog, parts: Path, checkpoint: dict[str, Any], chunk: DecidedChunk
) -> None:
    """Log a decided chunk's entries (those not logged before a kill), write its part file,
    record it in the checkpoint."""
    number = chunk.number
    previous = checkpoint["chunks"][-1] if checkpoint["chunks"] else None
    since = previous["log_sequence_after"] if previous else checkpoint["log_sequence_at_start"]
    # Entries after ``since`` are a killed run's, logged before its checkpoint was written;
    # the log is this process's alone (its lock), so none can exist unless it has grown.
    logged = (
        {entry.body.get("decision_id") for entry in log.entries(since)}
        if log.next_sequence > since
        else set()
    )
    entries = [
        entry
        for decision_id, entry in zip(chunk.ids, chunk.entries, strict=True)
        if decision_id not in logged
    ]
    if os.environ.get(CRASH_ENV, "").split(":")[:2] == ["mid-log", str(number)]:
        log.append_many(entries[: len(entries) // 2])
        _crash_point("mid-log", number)
    log.append_many(entries)
    _crash_point("after-log", number)
    name = f"chunk-{number:06d}.parquet"
    _atomic_write(parts / name, chunk.table.write_parquet)
    _crash_point("after-part", number)
    checkpoint["chunks"].append(
        {
            "number": number,
            "file": name,
            "rows": chunk.table.height,
            "first": list(chunk.first),
            "last": list(chunk.last),
            "logged": len(entries),
            "already_logged": chunk.table.height - len(entries),
            "log_sequence_after": log.next_sequence,
            "grades": chunk.grades,
            "warnings": chunk.warnings,
        }
    )
    _write_json(parts / CHECKPOINT, checkpoint)


def _combine(out: Path, parts: Path, checkpoint: dict[str, Any]) -> None:
    files = [parts / chunk["file"] for chunk in checkpoint["chunks"]]
    frames = [pl.read_parquet(path) for path in files]
    combined = pl.concat(frames) if frames else pl.DataFrame(schema=OUTPUT_SCHEMA)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out, combined.write_parquet)


def table_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a batch output table (None: it can): a plain SQL identifier,
    not a reserved word, so that it needs no quoting in anyone's queries."""
    if not _IDENTIFIER.fullmatch(name):
        return (
            f"{name!r} is not a plain SQL identifier (a letter or '_', then letters, "
            "digits or '_'; at most 63)"
        )
    with closing(duckdb.connect()) as connection:
        reserved = connection.execute(
            "SELECT count(*) FROM duckdb_keywords() "
            "WHERE keyword_category = 'reserved' AND keyword_name = lower(?)",
            [name],
        ).fetchone()
    if reserved and reserved[0]:
        return f"{name!r} is a reserved SQL keyword"
    return None


def store_conflict(settings: Settings, out: Path) -> str | None:
    """Why ``out`` may not receive a job's output (None: it may): the records store the
    job reads, whatever the output format."""
    store = settings.store_path
    same = out.resolve() == store.resolve() or (
        out.exists() and store.exists() and os.path.samefile(out, store)
    )
    if same:
        return (
            f"{out} is the service's records store ({store}), which the job reads; write elsewhere"
        )
    return None


def _parts_dir(job: BatchJob) -> Path:
    base = _output_base(job)
    return base.with_name(base.name + ".parts")


def _output_base(job: BatchJob) -> Path:
    """What the parts directory and the rejects file are named after: ``out``, or for a
    DuckDB table ``<out>.<table>`` (so that one database holds many jobs' tables)."""
    return job.out if job.table is None else job.out.with_name(f"{job.out.name}.{job.table}")


def _table_marker(checkpoint: dict[str, Any]) -> str:
    """The comment of a table this run of the job wrote (unique per run: a job run again
    from scratch has another start time, so other decision ids)."""
    return (
        f"credit-risk score-batch job {checkpoint['job_id']}, started "
        f"{checkpoint['started_ms']}, as of {checkpoint['params']['as_of']}"
    )


def _connect_output(settings: Settings, out: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    return connect_database(
        str(out),
        read_only=read_only,
        threads=settings.store.threads,
        memory_limit=settings.store.memory_limit,
        what="the output database",
    )


def _table_comment(connection: duckdb.DuckDBPyConnection, table: str) -> str | None:
    """The comment of ``table`` (a table or view of the main schema; '' without one), None
    when there is none of that name (DuckDB's names are case-insensitive)."""
    row = connection.execute(
        "SELECT coalesce(comment, '') FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND lower(table_name) = lower($name) "
        "UNION ALL SELECT coalesce(comment, '') FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND lower(view_name) = lower($name)",
        {"name": table},
    ).fetchone()
    return None if row is None else str(row[0])


def _foreign_table(out: Path, table: str) -> BatchError:
    return BatchError(
        f"{out} already holds a table (or view) named {table!r} that this job did not "
        "write; it is left as it is: choose another --table or --out"
    )


def _check_table(settings: Settings, out: Path, table: str, checkpoint_path: Path) -> None:
    """Refuse an existing ``table`` unless this job's run (its checkpoint) wrote it."""
    checkpoint = (
        json.loads(checkpoint_path.read_text(encoding="utf-8"))
        if checkpoint_path.exists()
        else None
    )
    if (checkpoint is not None and checkpoint["complete"]) or not out.exists():
        return  # finished (nothing more will be written), or no database yet
    try:
        with closing(_connect_output(settings, out, read_only=True)) as connection:
            comment = _table_comment(connection, table)
    except duckdb.Error as err:
        raise BatchError(f"cannot open {out} as a DuckDB database: {err}") from err
    if comment is not None and (checkpoint is None or comment != _table_marker(checkpoint)):
        raise _foreign_table(out, table)


def _combine_table(
    settings: Settings, out: Path, table: str, parts: Path, checkpoint: dict[str, Any]
) -> None:
    """Load the parts into ``table`` of the DuckDB database ``out`` in one transaction
    (with the run's marker as the table's comment): a kill leaves no table or all of it.
    A table with this run's marker was committed before a kill: it is left as it is."""
    marker = _table_marker(checkpoint)
    files = [str(parts / chunk["file"]) for chunk in checkpoint["chunks"]]
    name = f'"{table}"'  # a plain identifier (checked), quoted against keywords to come
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with closing(_connect_output(settings, out, read_only=False)) as connection:
            comment = _table_comment(connection, table)
            if comment == marker:
                return
            if comment is not None:
                raise _foreign_table(out, table)
            connection.execute("SET preserve_insertion_order = true")  # the parts' order
            connection.execute("BEGIN TRANSACTION")
            if files:
                connection.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [files])
            else:
                connection.register("batch_no_rows", pl.DataFrame(schema=OUTPUT_SCHEMA))
                connection.execute(f"CREATE TABLE {name} AS SELECT * FROM batch_no_rows")
                connection.unregister("batch_no_rows")
            literal = marker.replace("'", "''")  # (a statement without parameters)
            connection.execute(f"COMMENT ON TABLE {name} IS '{literal}'")
            _crash_point("mid-combine", "end")
            connection.execute("COMMIT")
    except duckdb.Error as err:
        raise BatchError(f"cannot write the table {table!r} into {out}: {err}") from err
    fsync_directory(out.parent)


def _write_rejects(out: Path, rejects: Sequence[Reject]) -> None:
    def write(path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "reason"])
            writer.writerows((r.line, r.reason) for r in rejects)

    _atomic_write(out.with_name(out.name + ".rejects.csv"), write)


def _summary(
    checkpoint: dict[str, Any], rejects: Sequence[Reject], seconds: float, extra: dict[str, Any]
) -> dict[str, Any]:
    grades: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for chunk in checkpoint["chunks"]:
        grades.update(chunk["grades"])
        warnings.update(chunk["warnings"])
    subjects = sum(chunk["rows"] for chunk in checkpoint["chunks"])
    run_rows = extra["decided_this_run"]
    return {
        "job_id": checkpoint["job_id"],
        "engine": extra["engine"],
        "subjects": subjects,
        "chunks": len(checkpoint["chunks"]),
        "grades": dict(sorted(grades.items())),
        "warnings": dict(sorted(warnings.items())),
        "rejects": len(rejects),
        "reject_lines": [{"line": r.line, "reason": r.reason} for r in rejects],
        "decided_this_run": run_rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(run_rows / seconds, 1) if seconds > 0 else None,
        "decide_seconds": extra["decide_seconds"],
    }
