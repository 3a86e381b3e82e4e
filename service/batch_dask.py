"""The Dask engine of ``credit-risk score-batch`` (``--engine dask`` / ``dask-local``).

Only the costly step moves to the cluster: deciding a chunk (LightGBM and its TreeSHAP
reasons, ~95% of the local job's decide time). Everything else stays with the driver, in
:mod:`service.batch`, exactly as for the local engine: the feature build and the warning
rules (one definition, bit-reproducible), the decision ids, the decision log (one writer,
group-committed, every decision logged before its part file), the part files, the
checkpoint and the summary. So the same job gives the same rows on either engine, and a
job started on one engine can be resumed on the other.

How a run goes: the driver exports the features of every unfinished chunk to
``<out>.parts/features/chunk-NNNNNN.parquet`` (one file per chunk, partitioned by subject:
chunks are ranges of the (type, key) order), reads them with ``dask.dataframe``
(``optimization.tune.active`` off, so that one file stays one partition: the chunks are
the units of checkpointing), and maps :func:`_score_partition` over the partitions with an
explicit output schema (:data:`DECISION_META`). Each worker loads the registered model
version once (hashes verified) from the data directory. The driver submits every
partition at once and takes the results in chunk order, logging and writing each chunk
while the later ones are still being decided.

On an existing cluster (``--scheduler``), the workers must see the data directory and the
output's parts directory at the same paths as the driver (a shared volume, as in
``docker/docker-compose.yml``) and must be able to import this package.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import deque
from collections.abc import Generator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd  # type: ignore[import-untyped]
import polars as pl

from features.catalog import feature_names
from features.pipeline import KEY, TYPE
from models.data import feature_matrix
from models.model import Decision
from models.reasons import Reason
from service.batch import BatchError
from service.batch_chunks import worker_model
from service.dask_workers import dask_client

__all__ = ["DECISION_META", "FEATURES_DIR", "dask_decisions"]

FEATURES_DIR = "features"
PARTITION_ROWS = 2_000


def _decision_table(
    keys: Sequence[str], decisions: Sequence[Decision], index: pd.Index | None = None
) -> pd.DataFrame:
    """What a worker sends back for a partition: one row per subject, reasons as JSON (the
    fields of :class:`models.reasons.Reason`; floats round-trip exactly)."""
    return pd.DataFrame(
        {
            KEY: pd.Series(list(keys), dtype="string", index=index),
            "probability_of_default": pd.Series(
                [d.probability_of_default for d in decisions], dtype="float64", index=index
            ),
            "score": pd.Series([d.score for d in decisions], dtype="int64", index=index),
            "grade": pd.Series([d.grade for d in decisions], dtype="string", index=index),
            "thin_file": pd.Series([d.thin_file for d in decisions], dtype="bool", index=index),
            "reasons": pd.Series(
                [json.dumps([dataclasses.astuple(r) for r in d.reasons]) for d in decisions],
                dtype="string",
                index=index,
            ),
        }
    )


DECISION_META = _decision_table([], [])
"""The output schema of :func:`_score_partition` (given to ``map_partitions`` as ``meta``)."""


def _score_partition(part: pd.DataFrame, data_dir: str, version: str) -> pd.DataFrame:
    """Decide one partition of exported feature rows (runs on a worker)."""
    if part.empty:
        return DECISION_META
    frame = pl.from_pandas(part)
    # One LightGBM thread per task: the worker runs one task per thread.
    decisions = worker_model(data_dir, version).decide_batch(feature_matrix(frame), explain=True)
    return _decision_table(frame[KEY].to_list(), decisions, part.index)


def _decisions(table: pd.DataFrame, keys: Sequence[str], version: str) -> list[Decision]:
    """A worker's answer for a chunk back into decisions, checked against the chunk's keys."""
    if table[KEY].tolist() != list(keys):
        raise RuntimeError("a Dask partition came back with other subjects than its chunk's")
    return [
        Decision(
            probability_of_default=pd_,
            score=score,
            grade=grade,
            reasons=tuple(Reason(*item) for item in json.loads(reasons)),
            thin_file=thin,
            model_version=version,
        )
        for pd_, score, grade, reasons, thin in zip(
            table["probability_of_default"].tolist(),
            table["score"].tolist(),
            table["grade"].tolist(),
            table["reasons"].tolist(),
            table["thin_file"].tolist(),
            strict=True,
        )
    ]


def _split(frames: Sequence[tuple[int, pl.DataFrame]], threads: int) -> list[int]:
    """Rows per partition: each chunk in at least two pieces per worker thread (a chunk
    alone keeps every worker busy, and the last ones finish together), at most
    :data:`PARTITION_ROWS` rows each."""
    largest = max(frame.height for _, frame in frames)
    rows = max(1, min(PARTITION_ROWS, -(-largest // (2 * max(1, threads)))))
    return [-(-frame.height // rows) for _, frame in frames]


def dask_decisions(
    frames: Sequence[tuple[int, pl.DataFrame]],
    *,
    data_dir: Path,
    model_version: str,
    parts: Path,
    scheduler: str | None = None,
    workers: int | None = None,
) -> Generator[list[Decision]]:
    """The decisions of each chunk ``(number, feature rows)``, in order, decided on a Dask
    cluster (``scheduler``, or a LocalCluster of ``workers``); a generator that holds the
    client until it is closed. Nothing starts when there is nothing to decide."""
    if not frames:
        return
    with ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(scheduler=scheduler, workers=workers))
        except OSError as err:  # distributed's connection failures and timeouts
            raise BatchError(f"cannot reach the Dask scheduler {scheduler}: {err}") from err
        threads = sum(client.nthreads().values()) or workers or 1  # type: ignore[no-untyped-call]
        exported = parts / FEATURES_DIR
        shutil.rmtree(exported, ignore_errors=True)
        exported.mkdir(parents=True)
        stack.callback(shutil.rmtree, exported, ignore_errors=True)
        counts = _split(frames, threads)
        files = []
        for (number, frame), count in zip(frames, counts, strict=True):
            rows = -(-frame.height // count)
            for piece in range(count):
                path = exported / f"chunk-{number:06d}-{piece:04d}.parquet"
                frame.slice(piece * rows, rows).select(TYPE, KEY, *feature_names()).write_parquet(
                    path
                )
                files.append(str(path.resolve()))
        with dask.config.set({"optimization.tune.active": False}):
            features = dd.read_parquet(files, dtype_backend="pyarrow")
            if features.npartitions != len(files):
                raise RuntimeError(f"{len(files)} feature files read as {features.npartitions}")
            scored = features.map_partitions(
                _score_partition, str(data_dir.resolve()), model_version, meta=DECISION_META
            )
            pieces = scored.to_delayed()
        # Earlier chunks first, so that the driver logs and writes each chunk while the
        # workers decide the next ones (without priorities the first result came last).
        pending: deque[Any] = deque()
        for index, count in enumerate(counts):
            start = sum(counts[:index])
            pending.extend(
                client.compute(  # type: ignore[no-untyped-call]
                    pieces[start : start + count], priority=len(counts) - index
                )
            )
        for (_, frame), count in zip(frames, counts, strict=True):
            tables = []
            for _ in range(count):
                future = pending.popleft()
                tables.append(future.result())
                future.release()
            yield _decisions(pd.concat(tables), frame[KEY].to_list(), model_version)
