"""Batch scoring (``credit-risk score-batch``), local engine: chunked, checkpointed, resumable.

A job scores every subject of the store (``--all``) or of a subject list as of one date:
features from :func:`features.pipeline.build` (the one definition training and the server
use), decisions with reasons from :meth:`models.model.RiskModel.decide_batch` (TreeSHAP:
~0.5 ms a row, the bulk of the job's time), warning flags from
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

Engines (``BatchJob.engine``) differ only in where a chunk is decided: ``local`` decides
each chunk in this process when its turn comes; ``dask`` (an existing scheduler) and
``dask-local`` (a LocalCluster of ``workers`` processes) decide them on a Dask cluster
(:mod:`service.batch_dask`) and hand the decisions back in chunk order. Everything else
above is the driver's whatever the engine, and the engine is not part of the job's
identity: a job interrupted on one engine resumes on another, with the same ids. The model
is loaded without its compiled forest (batches are LightGBM's, whatever a chunk's size),
so every engine gives the same decisions.
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
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from audit.chain import fsync_directory
from audit.entries import decision_entry_bytes, person_groups
from audit.ids import derived_decision_id
from audit.log import DecisionLog
from features.catalog import catalog_hash
from features.pipeline import KEY, TYPE, build
from features.sources import SharedCreditReads
from features.warning_eval import evaluate_warnings
from features.warnings import warning_catalog_hash
from models.data import feature_matrix
from models.decisions import SubjectDecision, flags_from_frame, subject_decisions
from models.model import Decision, RiskModel
from records.runtime import make_pseudonymiser, open_store
from records.store import RecordStore, connect_database
from service.batch_output import OUTPUT_SCHEMA, output_frame
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

CRASH_ENV = "CREDIT_RISK_BATCH_CRASH"
"""Tests only: ``<point>:<chunk>`` kills the process (SIGKILL) at ``point`` of chunk
number ``chunk``: ``mid-log`` (half the chunk's entries appended), ``after-log`` (all
appended, no part file), ``after-part`` (part file written, no checkpoint); and, with
``end`` for the chunk, at the final step: ``mid-combine`` (DuckDB output: the table
created in the open transaction, not committed), ``after-combine`` (the output complete,
the checkpoint not yet marked complete). With a ``:int`` suffix it sends SIGINT instead
(Ctrl-C: to the process group when the process leads one, as a terminal does, so that a
LocalCluster's workers get it too)."""

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
    workers: int | None = None  # engine "dask-local": worker processes (default: cores)
    table: str | None = None  # None: Parquet at ``out``; else this table of the DuckDB file ``out``


@dataclass
class BatchResult:
    summary: dict[str, Any]
    rejects: list[Reject] = field(default_factory=list)


Progress = Callable[[int], object]
Chunks = Sequence[tuple[int, pl.DataFrame]]  # (chunk number, its feature rows), in order
Decider = Callable[[Chunks], Generator[list[Decision]]]
"""An engine: the decisions (with reasons) of each chunk, in order, as they are wanted."""


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
    base = _output_base(job)
    parts = base.with_name(base.name + ".parts")
    checkpoint_path = parts / CHECKPOINT
    if job.table is not None:  # before any work: never end a long job on someone's table
        _check_table(settings, job.out, job.table, checkpoint_path)
    started = time.perf_counter()
    model = RiskModel.load(settings.data_dir, compiled=False)
    keys, lines, rejects = _subjects(settings, job)
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
    flags = flags_from_frame(warnings)
    gc.freeze()  # flags, people and the rest built so far live to the end (_collector_paused)

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
        summary_extra = _run_chunks(
            settings,
            job,
            model,
            frame,
            flags,
            people,
            log,
            parts,
            checkpoint,
            progress,
            _decider(settings, job, model, parts),
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
    objects that live to its end (flags with their evidence, person attributes, at 1M
    subjects) and, per chunk, decisions and log entries that reference counting frees; the
    collector kept walking them all (2.5x the time to build the flags, 15% of a 50k job).
    The job freezes its long-lived objects once built and collects the young generation
    after each chunk, which catches any cycle a chunk made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _local_decisions(model: RiskModel, chunks: Chunks) -> Generator[list[Decision]]:
    """Each chunk's decisions, in order, the next chunk's decided on a second thread while
    the caller logs and writes this one (LightGBM releases the GIL while it explains)."""

    def decide(chunk: pl.DataFrame) -> list[Decision]:
        return model.decide_batch(feature_matrix(chunk), explain=True)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-decide")
    ahead: deque[Future[list[Decision]]] = deque()
    try:
        for _, chunk in chunks:
            ahead.append(pool.submit(decide, chunk))
            if len(ahead) > 1:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    finally:  # closed early (an interruption): what is queued is dropped
        pool.shutdown(wait=True, cancel_futures=True)


def _decider(settings: Settings, job: BatchJob, model: RiskModel, parts: Path) -> Decider:
    if job.engine == "local":
        return lambda chunks: _local_decisions(model, chunks)
    from service.batch_dask import dask_decisions  # dask only when asked for

    return lambda chunks: dask_decisions(
        chunks,
        data_dir=settings.data_dir,
        model_version=model.version,
        parts=parts,
        scheduler=job.scheduler if job.engine == "dask" else None,
        workers=job.workers,
    )


def _run_chunks(
    settings: Settings,
    job: BatchJob,
    model: RiskModel,
    frame: pl.DataFrame,
    flags: dict[str, Any],
    people: dict[str, tuple[Any, ...]],
    log: DecisionLog,
    parts: Path,
    checkpoint: dict[str, Any],
    progress: Progress | None,
    decide: Decider,
) -> dict[str, Any]:
    done = len(checkpoint["chunks"])
    total = frame.height
    decided_rows = 0
    decide_seconds = 0.0
    if progress is not None:
        progress(min(total, done * job.chunk_rows))
    todo = [
        (number, frame.slice(start, job.chunk_rows))
        for number, start in enumerate(range(0, total, job.chunk_rows))
        if number >= done and not checkpoint["complete"]
    ]
    with closing(decide(todo)) as decisions:
        for number, chunk in todo:
            tick = time.perf_counter()
            decided = subject_decisions(
                job.as_of,
                chunk[TYPE].to_list(),
                chunk[KEY].to_list(),
                feature_matrix(chunk),
                next(decisions),
                flags,
                explained=True,
            )
            decide_seconds += time.perf_counter() - tick
            decided_rows += len(decided)
            _finish_chunk(settings, job, model, people, log, parts, checkpoint, number, decided)
            gc.collect(0)
            if progress is not None:
                progress(len(decided))
    return {
        "engine": job.engine,
        "decided_this_run": decided_rows,
        "decide_seconds": round(decide_seconds, 3),
    }


def _finish_chunk(
    settings: Settings,
    job: BatchJob,
    model: RiskModel,
    people: dict[str, tuple[Any, ...]],
    log: DecisionLog,
    parts: Path,
    checkpoint: dict[str, Any],
    number: int,
    decided: Sequence[SubjectDecision],
) -> None:
    """Log a decided chunk's entries (those not logged before a kill), write its part file,
    record it in the checkpoint."""
    secret = bytes.fromhex(checkpoint["secret"])
    rules_version = warning_catalog_hash()[:16]
    ids = [
        derived_decision_id(checkpoint["started_ms"], secret, item.subject_key) for item in decided
    ]
    previous = checkpoint["chunks"][-1] if checkpoint["chunks"] else None
    since = previous["log_sequence_after"] if previous else checkpoint["log_sequence_at_start"]
    # Entries after ``since`` are a killed run's, logged before its checkpoint was written;
    # the log is this process's alone (its lock), so none can exist unless it has grown.
    logged = (
        {entry.body.get("decision_id") for entry in log.entries(since)}
        if log.next_sequence > since
        else set()
    )
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
            request_id=f"{checkpoint['job_id']}:{number}",
            subject=item,
            model=model,
            warning_rules_version=rules_version,
            reasons_given=True,
            groups=_groups(item, people, now.date(), settings.audit.fairness_by_gender),
        )
        for decision_id, item in zip(ids, decided, strict=True)
        if decision_id not in logged
    ]
    if os.environ.get(CRASH_ENV, "").split(":")[:2] == ["mid-log", str(number)]:
        log.append_many(entries[: len(entries) // 2])
        _crash_point("mid-log", number)
    log.append_many(entries)
    _crash_point("after-log", number)
    name = f"chunk-{number:06d}.parquet"
    table = output_frame(decided, ids)
    _atomic_write(parts / name, table.write_parquet)
    _crash_point("after-part", number)
    grades = Counter(table["grade"].to_list())
    warning_codes = Counter(flag.code for item in decided for flag in item.warnings)
    checkpoint["chunks"].append(
        {
            "number": number,
            "file": name,
            "rows": table.height,
            "first": [decided[0].subject_type, decided[0].subject_key],
            "last": [decided[-1].subject_type, decided[-1].subject_key],
            "logged": len(entries),
            "already_logged": len(decided) - len(entries),
            "log_sequence_after": log.next_sequence,
            "grades": dict(grades),
            "warnings": dict(warning_codes),
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
