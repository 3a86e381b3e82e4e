"""Distributed training on Dask with ``lightgbm.dask``: the booster of the risk model fitted
by a cluster, everything around it the local path's.

:class:`DaskFitter` is a :data:`models.training.BoosterFitter`: ``train`` / ``train_on_frames``
build the training frames, split off the holdout, calibrate and report exactly as for the
local engine; only the booster is fitted differently:

1. the *fit* rows (canonical order, catalog features as float64, label) are exported to
   Parquet, one file per partition, a subject's rows all in one partition
   (``crc32(subject_type TAB subject_key) mod partitions``, canonical order inside);
2. the files are read back with ``dask.dataframe.read_parquet`` (with dask's I/O fusion
   off: ``optimization.tune.active = False``; with it on, fused partitions make
   ``lightgbm.dask`` fail with ``zip() argument 2 is shorter``), partition i pinned to
   worker i mod workers so that every worker trains;
3. ``DaskLGBMClassifier`` fits with the local path's LightGBM parameters
   (:meth:`TrainingParams.lightgbm_params`; only the thread count, which Dask sets per
   worker, and the distributed tree learner differ), its monotone constraints and
   categorical features;
4. distributed LightGBM has no early stopping on a validation set, so every worker runs
   :class:`HoldoutStopper` on the whole holdout (all stop on the same iteration), and the
   driver cuts the model by the same rule (:func:`holdout_best_iteration`, equal to
   ``lightgbm.early_stopping``'s choice): a plain LightGBM text model, saved like the local
   one's.

Distributed LightGBM is not bit-reproducible from run to run (see
``docs/distributed-training.md``): what is pinned and what varied is recorded in the
manifest's ``training_engine``; decisions are replayed against the registered artifact.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import polars as pl

from features.catalog import feature_names
from features.pipeline import KEY, TYPE
from models.data import LabelledRows, categorical_features
from models.training import FittedBooster, TrainingParams

__all__ = [
    "DASK_ENGINE",
    "DASK_LOCAL_ENGINE",
    "DaskEngine",
    "DaskFitter",
    "HoldoutStopper",
    "PartitionFile",
    "distributed_lightgbm_params",
    "export_partitions",
    "holdout_best_iteration",
    "partition_of",
]

DASK_ENGINE = "dask"
DASK_LOCAL_ENGINE = "dask-local"
PARTITION_RULE = "crc32(subject_type + TAB + subject_key) mod partitions"
LABEL = "label"
HOLDOUT_FILE = "holdout.parquet"
_LEAF_BLOCK = 100  # trees per pred_leaf call while choosing the best iteration


@dataclass(frozen=True)
class DaskEngine:
    """Where and how to train: an existing cluster (``scheduler``) or a LocalCluster of
    ``workers`` single-threaded worker processes. ``partitions`` defaults to two per
    worker. The Parquet files go under ``export_dir`` (it must be readable by every worker:
    a shared volume for a remote cluster), by default a temporary directory (under
    ``scratch_dir`` if given) removed after training; files in a given ``export_dir`` are
    kept."""

    scheduler: str | None = None
    workers: int = 2
    threads_per_worker: int = 1
    partitions: int | None = None
    export_dir: Path | None = None
    scratch_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.scheduler is not None and not self.scheduler.strip():
            raise ValueError("the scheduler address is empty")
        if self.workers < 1 or self.threads_per_worker < 1:
            raise ValueError("workers and threads per worker must be at least 1")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    @property
    def name(self) -> str:
        return DASK_LOCAL_ENGINE if self.scheduler is None else DASK_ENGINE


@dataclass(frozen=True)
class PartitionFile:
    name: str
    rows: int
    subjects: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def distributed_lightgbm_params(params: TrainingParams) -> dict[str, Any]:
    """The local path's LightGBM parameters for ``DaskLGBMClassifier``: the same dictionary
    without the thread count (Dask gives each worker its own ``nthreads``) and with the
    data-parallel tree learner named."""
    out = params.lightgbm_params()
    out.pop("num_threads", None)
    out["tree_learner"] = "data"
    return out


def partition_of(subject_type: str, subject_key: str, partitions: int) -> int:
    """The partition of a subject's rows: stable across runs, machines and library versions."""
    return zlib.crc32(f"{subject_type}\t{subject_key}".encode()) % partitions


def export_partitions(rows: LabelledRows, directory: Path, partitions: int) -> list[PartitionFile]:
    """Write ``rows`` as ``part.NNNNN.parquet`` files, one per partition, a subject's rows in
    one file, canonical order inside; columns: subject type and key, as-of date, the
    catalog's features as float64 (NaN = absent), label. Every partition must hold rows."""
    frame = rows.frame
    subjects = frame.select(TYPE, KEY).unique().sort(TYPE, KEY)
    subjects = subjects.with_columns(
        pl.Series(
            "_partition",
            [
                partition_of(kind, key, partitions)
                for kind, key in zip(subjects[TYPE].to_list(), subjects[KEY].to_list(), strict=True)
            ],
            dtype=pl.Int64,
        )
    )
    exported = _exported(rows).join(subjects, on=[TYPE, KEY], how="left", maintain_order="left")
    directory.mkdir(parents=True, exist_ok=True)
    files: list[PartitionFile] = []
    for index in range(partitions):
        part = exported.filter(pl.col("_partition") == index).drop("_partition")
        if part.height == 0:
            raise ValueError(
                f"partition {index} of {partitions} has no rows ({subjects.height} subjects): "
                "use fewer partitions"
            )
        files.append(_write(part, directory / f"part.{index:05d}.parquet"))
    return files


def _exported(rows: LabelledRows) -> pl.DataFrame:
    """The columns written: subject type and key, as-of date, features as float64, label."""
    return pl.concat(
        [
            rows.frame.select(TYPE, KEY, "as_of"),
            pl.DataFrame(rows.matrix, schema=list(feature_names()), orient="row"),
            pl.DataFrame({LABEL: rows.label}),
        ],
        how="horizontal",
    )


def _write(frame: pl.DataFrame, path: Path) -> PartitionFile:
    frame.write_parquet(path, compression="zstd", statistics=True)
    return PartitionFile(
        name=path.name,
        rows=frame.height,
        subjects=frame.select(TYPE, KEY).n_unique(),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _machines(model_text: str) -> int | None:
    found = re.search(r"^\[num_machines: (\d+)\]$", model_text, flags=re.MULTILINE)
    return int(found.group(1)) if found else None


def _parquet_digest(files: list[PartitionFile]) -> str:
    """One sha256 over the partition files in order (name, rows, file sha256 per line)."""
    lines = "".join(f"{f.name}\t{f.rows}\t{f.sha256}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _leaf_values(booster: Any) -> list[npt.NDArray[np.float64]]:
    """Every tree's leaf outputs, indexed by leaf number (the first tree's include the
    initial score LightGBM boosts from)."""
    values: list[npt.NDArray[np.float64]] = []
    for tree in booster.dump_model()["tree_info"]:
        leaves = np.zeros(int(tree["num_leaves"]), dtype=np.float64)
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_value" in node:
                leaves[int(node.get("leaf_index", 0))] = float(node["leaf_value"])
            else:
                stack.extend((node["left_child"], node["right_child"]))
        values.append(leaves)
    return values


class _HoldoutTrace:
    """LightGBM's early-stopping rule on a holdout's binary log loss, fed one tree at a
    time: the best iteration is the one of the lowest loss; stop once ``stopping_rounds``
    iterations in a row bring no improvement."""

    def __init__(self, label: npt.NDArray[Any], stopping_rounds: int) -> None:
        self.sign = np.where(np.asarray(label) > 0, -1.0, 1.0)
        self.raw = np.zeros(self.sign.size, dtype=np.float64)
        self.stopping_rounds = stopping_rounds
        self.best_loss = np.inf
        self.best = 0  # 0-based iteration

    def add(self, iteration: int, tree_raw: npt.NDArray[np.float64]) -> bool:
        """Add tree ``iteration``'s raw outputs; True when training should stop."""
        self.raw += tree_raw
        loss = float(np.mean(np.logaddexp(0.0, self.sign * self.raw)))
        if loss < self.best_loss:
            self.best_loss, self.best = loss, iteration
            return False
        return iteration - self.best >= self.stopping_rounds


class HoldoutStopper:
    """A LightGBM callback run inside every Dask worker: each reads the *whole* holdout
    (``holdout.parquet`` in the export directory), adds the new tree's raw outputs and
    applies the early-stopping rule. Every worker holds the same model and the same
    holdout, so all reach the same verdict on the same iteration and stop together (in
    data-parallel training a worker that stopped alone would leave the others waiting).
    It only saves the trees past the stopping point; the kept number of trees is chosen
    again on the driver (:func:`holdout_best_iteration`)."""

    order = 30
    before_iteration = False

    def __init__(self, holdout_path: str, stopping_rounds: int) -> None:
        self.holdout_path = holdout_path
        self.stopping_rounds = stopping_rounds
        self._matrix: npt.NDArray[np.float64] | None = None
        self._trace: _HoldoutTrace | None = None

    def __call__(self, env: Any) -> None:
        if self._matrix is None or self._trace is None or env.iteration == env.begin_iteration:
            frame = pl.read_parquet(self.holdout_path)
            self._matrix = np.ascontiguousarray(
                frame.select(feature_names()).to_numpy(), dtype=np.float64
            )
            self._trace = _HoldoutTrace(frame[LABEL].to_numpy(), self.stopping_rounds)
        tree_raw = env.model.predict(
            self._matrix,
            raw_score=True,
            start_iteration=env.iteration,
            num_iteration=1,
            num_threads=1,
        )
        if self._trace.add(env.iteration, np.asarray(tree_raw, dtype=np.float64)):
            best = self._trace.best
            raise lgb.callback.EarlyStopException(
                best, [("holdout", "binary_logloss", self._trace.best_loss, False)]
            )

    def __getstate__(self) -> dict[str, Any]:
        return {"holdout_path": self.holdout_path, "stopping_rounds": self.stopping_rounds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["holdout_path"], state["stopping_rounds"])  # type: ignore[misc]


def holdout_best_iteration(booster: Any, holdout: LabelledRows, stopping_rounds: int) -> int:
    """The number of trees early stopping on ``holdout`` would have kept (LightGBM's rule:
    the iteration of the lowest binary log loss, scanning until ``stopping_rounds``
    iterations in a row bring no improvement). Scores are accumulated tree by tree from the
    leaves each holdout row falls in."""
    values = _leaf_values(booster)
    trace = _HoldoutTrace(holdout.label, stopping_rounds)
    for start in range(0, len(values), _LEAF_BLOCK):
        count = min(_LEAF_BLOCK, len(values) - start)
        leaves = np.asarray(
            booster.predict(
                holdout.matrix,
                pred_leaf=True,
                start_iteration=start,
                num_iteration=count,
                num_threads=1,
            ),
            dtype=np.intp,
        ).reshape(holdout.rows, count)
        for offset in range(count):
            if trace.add(start + offset, values[start + offset][leaves[:, offset]]):
                return trace.best + 1
    return trace.best + 1


@contextmanager
def _client(engine: DaskEngine) -> Iterator[Any]:
    """A distributed client: connected to ``engine.scheduler``, or to a LocalCluster of
    ``engine.workers`` worker processes on 127.0.0.1 (no dashboard) torn down afterwards."""
    from distributed import Client, LocalCluster

    if engine.scheduler is not None:
        with Client(engine.scheduler, timeout="30s") as client:  # type: ignore[no-untyped-call]
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=engine.workers,
            threads_per_worker=engine.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # LightGBM inside a worker must see one thread per Dask thread; polars (reading
            # or converting partitions) likewise, so workers do not oversubscribe the cores.
            env={
                "POLARS_MAX_THREADS": str(engine.threads_per_worker),
                "OMP_NUM_THREADS": str(engine.threads_per_worker),
            },
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


@contextmanager
def _export_directory(engine: DaskEngine) -> Iterator[Path]:
    if engine.export_dir is not None:
        directory = engine.export_dir
        if directory.exists() and any(directory.iterdir()):
            raise ValueError(f"export directory {directory} is not empty")
        yield directory
        return
    if engine.scratch_dir is not None:
        engine.scratch_dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="credit-risk-train-", dir=engine.scratch_dir))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _pinned(client: Any, frame: Any, workers: list[str]) -> tuple[Any, list[int]]:
    """``frame`` with partition i read into memory on ``workers[i mod len(workers)]`` (the
    workers in address order), so that every worker holds data and becomes a LightGBM
    machine; left to itself the scheduler may put every partition on one worker. Returns
    the pinned frame and how many partitions each worker holds."""
    import dask.dataframe as dd
    from distributed import wait

    meta = frame._meta
    futures = [
        client.compute(part, workers=[workers[index % len(workers)]], allow_other_workers=False)
        for index, part in enumerate(frame.to_delayed())
    ]
    wait(futures)  # type: ignore[no-untyped-call]
    counts = [len(range(index, len(futures), len(workers))) for index in range(len(workers))]
    return dd.from_delayed(futures, meta=meta, verify_meta=False), counts


class DaskFitter:
    """Fits the booster on a Dask cluster (see the module docstring); a
    :data:`models.training.BoosterFitter`."""

    def __init__(self, engine: DaskEngine) -> None:
        self.engine = engine

    def __call__(
        self, fit: LabelledRows, holdout: LabelledRows, params: TrainingParams
    ) -> FittedBooster:
        import dask
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        engine = self.engine
        lgb_params = distributed_lightgbm_params(params)
        names = list(feature_names())
        clock = time.perf_counter()
        seconds: dict[str, float] = {}

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[name] = round(now - clock, 3)
            clock = now

        with _export_directory(engine) as directory, _client(engine) as client:
            lap("cluster")
            nthreads: dict[str, int] = dict(client.nthreads())
            if not nthreads:
                raise RuntimeError(f"the Dask cluster at {engine.scheduler} has no workers")
            partitions = engine.partitions or 2 * len(nthreads)
            files = export_partitions(fit, directory, partitions)
            holdout_file = _write(_exported(holdout), directory / HOLDOUT_FILE)
            stopper = HoldoutStopper(str(directory / HOLDOUT_FILE), params.early_stopping_rounds)
            lap("export")
            paths = [str(directory / f.name) for f in files]
            with dask.config.set({"optimization.tune.active": False}):
                frame = dd.read_parquet(paths, columns=[*names, LABEL])
                if frame.npartitions != partitions:
                    raise RuntimeError(
                        f"dask read {frame.npartitions} partitions from {partitions} files"
                    )
                frame, placement = _pinned(client, frame, sorted(nthreads))
                model = DaskLGBMClassifier(
                    client=client, n_estimators=params.num_boost_round, **lgb_params
                )
                with warnings.catch_warnings():
                    # n_jobs: the thread count is each worker's nthreads, as intended.
                    warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                    model.fit(
                        frame[names],
                        frame[LABEL],
                        categorical_feature=categorical_features(),
                        callbacks=[stopper],
                    )
            booster = model.booster_
            lap("fit")
            # The workers' verdict cut the returned model; the driver applies the same rule
            # again on the holdout it holds (the number of trees kept is the driver's).
            workers_best = int(booster.current_iteration())
            best = holdout_best_iteration(booster, holdout, params.early_stopping_rounds)
            model_text: str = booster.model_to_string(num_iteration=best)
            record: dict[str, Any] = {
                "engine": engine.name,
                "scheduler": engine.scheduler,
                "workers": len(nthreads),
                # The workers that held partitions, i.e. LightGBM's machines.
                "lightgbm_machines": _machines(model_text),
                "threads_per_worker": sorted(set(nthreads.values())),
                "partitions": partitions,
                "partitions_per_worker": placement,
                "partition_key": [TYPE, KEY],
                "partition_rule": PARTITION_RULE,
                "exported_rows": "fit",
                "parquet": {
                    "sha256": _parquet_digest(files),
                    "files": [f.to_dict() for f in files],
                    "holdout": holdout_file.to_dict(),
                    "kept_in": str(engine.export_dir) if engine.export_dir else None,
                },
                "best_iteration_rule": (
                    "lowest holdout binary log loss, scanning until "
                    f"{params.early_stopping_rounds} iterations bring no improvement; "
                    "applied in every worker to stop, and again on the driver to cut"
                ),
                "workers_best_iteration": workers_best,
                "seconds": seconds,  # cluster start or connection, Parquet export, fit
                "reproducible": False,
                "libraries": {
                    "dask": version("dask"),
                    "distributed": version("distributed"),
                    "lightgbm": str(lgb.__version__),
                },
            }
        return FittedBooster(
            model_text=model_text,
            best_iteration=best,
            lightgbm_params=lgb_params,
            engine=record,
        )
