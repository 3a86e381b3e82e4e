"""``credit-risk train``, ``train-table`` and ``report``: the risk model from the command line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from service.cli_common import common_options, settings_from

if TYPE_CHECKING:
    from models.dask_training import DaskEngine

__all__ = ["compile_model", "report", "train", "train_table"]

ENGINES = ("local", "dask", "dask-local")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to standard output meanwhile, Python's and native code's
    (LightGBM's network log, worker processes started meanwhile inherit it), to standard
    error: a command's standard output is its one JSON summary."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _check_engine_options(
    engine: str,
    scheduler: str | None,
    workers: int | None,
    partitions: int | None,
    export_dir: Path | None,
) -> None:
    """A usage error for options that do not go with the engine."""
    if engine == "dask" and scheduler is None:
        raise click.UsageError(
            "--engine dask trains on an existing Dask cluster and needs --scheduler ADDRESS "
            "(e.g. tcp://scheduler:8786); for a cluster on this machine use "
            "--engine dask-local --workers N"
        )
    if scheduler is not None and engine != "dask":
        raise click.UsageError("--scheduler goes with --engine dask")
    if workers is not None and engine != "dask-local":
        raise click.UsageError(
            "--workers goes with --engine dask-local (an existing cluster has its own workers)"
        )
    if engine == "local":
        for name, value in (("--partitions", partitions), ("--export-dir", export_dir)):
            if value is not None:
                raise click.UsageError(f"{name} goes with --engine dask or dask-local")


def _dask_engine(
    scheduler: str | None,
    workers: int | None,
    partitions: int | None,
    export_dir: Path | None,
    data_dir: Path,
) -> DaskEngine:
    from models.dask_training import DaskEngine

    return DaskEngine(
        scheduler=scheduler,
        workers=workers if workers is not None else 2,
        partitions=partitions,
        export_dir=export_dir,
        # The data directory is the volume a deployment shares with its Dask workers.
        scratch_dir=data_dir / "tmp",
    )


@click.command()
@common_options
@click.option(
    "--as-of-end",
    "as_of_end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="Last out-of-time validation date: a month end (YYYY-MM-DD). Its label window "
    "(the next --horizon-months) must be covered by the records.",
)
@click.option(
    "--months",
    type=click.IntRange(min=1, max=120),
    required=True,
    help="In-time training dates: this many month ends before the validation months.",
)
@click.option(
    "--validation-months",
    type=click.IntRange(min=1, max=36),
    required=True,
    help="Out-of-time validation dates: the last this many month ends up to --as-of-end.",
)
@click.option("--seed", type=int, default=None, help="Training seed (default: a fixed one).")
@click.option(
    "--horizon-months",
    type=click.IntRange(min=1, max=60),
    default=12,
    show_default=True,
    help="A default within this many months after an as-of date is a bad outcome.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=2, show_default=True, help="LightGBM threads."
)
@click.option(
    "--max-trees",
    type=click.IntRange(min=1),
    default=1_000,
    show_default=True,
    help="At most this many boosting rounds; the holdout chooses how many are kept.",
)
@click.option(
    "--no-current",
    is_flag=True,
    help="Store the model without making it the current one.",
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="Where the booster is fitted: this process (local), an existing Dask cluster "
    "(dask, with --scheduler), or a Dask LocalCluster on this machine (dask-local, with "
    "--workers). See docs/distributed-training.md.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="The Dask scheduler of an existing cluster (--engine dask), e.g. tcp://host:8786.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of the LocalCluster (--engine dask-local; default 2), one thread each.",
)
@click.option(
    "--partitions",
    type=click.IntRange(min=1),
    default=None,
    help="Parquet partitions of the training rows, by subject (Dask engines; default two "
    "per worker).",
)
@click.option(
    "--export-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the Parquet partitions are written and kept (Dask engines; it must be "
    "readable by every worker). Default: a temporary directory under <data dir>/tmp, "
    "removed afterwards.",
)
def train(
    data_dir: Path | None,
    config_file: Path | None,
    as_of_end: datetime,
    months: int,
    validation_months: int,
    seed: int | None,
    horizon_months: int,
    threads: int,
    max_trees: int,
    no_current: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    partitions: int | None,
    export_dir: Path | None,
) -> None:
    """Train, calibrate, evaluate and register a risk model; print a JSON summary."""
    import time

    from models.data import monthly_dates
    from models.registry import ModelRegistry
    from models.training import TrainingParams, incomplete_label_dates, records_end
    from models.training import train as train_model
    from records.runtime import open_store

    _check_engine_options(engine, scheduler, workers, partitions, export_dir)
    settings = settings_from(data_dir, config_file)
    dask_engine = None
    fitter = None
    if engine != "local":
        from models.dask_training import DaskFitter

        dask_engine = _dask_engine(scheduler, workers, partitions, export_dir, settings.data_dir)
        fitter = DaskFitter(dask_engine)
    try:
        dates = monthly_dates(as_of_end.date(), months + validation_months)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--as-of-end") from None
    params = TrainingParams(num_threads=threads, num_boost_round=max_trees)
    if seed is not None:
        params = TrainingParams(num_threads=threads, num_boost_round=max_trees, seed=seed)
    started = time.perf_counter()
    with open_store(settings) as store:
        incomplete = incomplete_label_dates(store, dates, horizon_months)
        last_record = records_end(store)
        try:
            with _stdout_to_stderr():
                model = train_model(
                    store,
                    as_of_dates=dates[:months],
                    validation_dates=dates[months:],
                    horizon_months=horizon_months,
                    params=params,
                    home_province=settings.home_province,
                    retention_years=settings.features.retention_years,
                    fitter=fitter,
                )
        except ValueError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except OSError as err:  # the Dask scheduler unreachable, among others
            where = f" (Dask scheduler {scheduler})" if scheduler else ""
            click.echo(f"error: training failed{where}: {err}", err=True)
            sys.exit(3)
    registry = ModelRegistry(settings.data_dir)
    version = registry.save(model, make_current=not no_current)
    metrics = model.metrics
    summary = {
        "version": version,
        "path": str(registry.path(version)),
        "oot_auc": metrics["oot_auc"],
        "oot_ks": metrics["oot_ks"],
        "oot_ece": metrics["oot_ece"],
        "oot_rows": metrics["oot_rows"],
        "oot_defaults": metrics["oot_defaults"],
        "calibration": model.calibration.method,
        "best_iteration": model.best_iteration,
        "engine": model.engine["engine"],
        "as_of_dates": [d.isoformat() for d in dates[:months]],
        "validation_dates": [d.isoformat() for d in dates[months:]],
        "current": not no_current,
        "seconds": round(time.perf_counter() - started, 2),
        "warnings": [
            f"labels at {day.isoformat()} may be incomplete: the latest repayment or default "
            f"record was reported on {last_record}, before the end of its {horizon_months}-month "
            "window"
            for day in incomplete
        ],
    }
    if dask_engine is not None:
        summary["workers"] = model.engine["workers"]
        summary["partitions"] = model.engine["partitions"]
        summary["parquet_sha256"] = model.engine["parquet"]["sha256"]
    click.echo(json.dumps(summary))


@click.command()
@common_options
@click.argument("version", required=False)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="HTML file to write (default: report.html in the model's version directory).",
)
def report(
    data_dir: Path | None, config_file: Path | None, version: str | None, out: Path | None
) -> None:
    """Write a model's HTML report (default: the current model) and print its path."""
    from models.registry import ModelRegistry, RegistryError
    from models.report import render_html

    settings = settings_from(data_dir, config_file)
    registry = ModelRegistry(settings.data_dir)
    try:
        resolved, manifest, figures = registry.report(version)
    except RegistryError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(3)
    target = out or registry.path(resolved) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(figures, manifest), encoding="utf-8")
    click.echo(str(target))


@click.command("train-table")
@common_options
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The flat table: a UTF-8 CSV file with a header line.",
)
@click.option("--target", required=True, help="The column that says whether a row is bad.")
@click.option(
    "--bad",
    required=True,
    help="The target value of a bad row; every other non-null value is good, rows with no "
    "target are dropped (and counted).",
)
@click.option(
    "--bad-vs-rest",
    is_flag=True,
    help="Accept a target with more than two distinct values: --bad is bad, the rest good.",
)
@click.option(
    "--cv",
    "folds",
    type=click.IntRange(min=2, max=20),
    default=5,
    show_default=True,
    help="Cross-validation folds (stratified).",
)
@click.option(
    "--ignore",
    multiple=True,
    metavar="COLUMN",
    help="A column that is no feature (an identifier, a date); repeat for more.",
)
@click.option("--seed", type=int, default=None, help="Training seed (default: a fixed one).")
@click.option(
    "--threads", type=click.IntRange(min=1), default=2, show_default=True, help="LightGBM threads."
)
@click.option(
    "--register",
    is_flag=True,
    help="Also train on every row, calibrate, and store the model (never as the current one).",
)
def train_table(
    data_dir: Path | None,
    config_file: Path | None,
    csv_path: Path,
    target: str,
    bad: str,
    bad_vs_rest: bool,
    folds: int,
    ignore: tuple[str, ...],
    seed: int | None,
    threads: int,
    register: bool,
) -> None:
    """Cross-validate a model of a flat table; print AUC and KS (mean, std) as JSON."""
    import time
    from dataclasses import replace

    from models import tabular
    from models.registry import ModelRegistry, RegistryError

    started = time.perf_counter()
    registry = ModelRegistry(settings_from(data_dir, config_file).data_dir) if register else None
    params = tabular.TableParams(folds=folds, num_threads=threads)
    if seed is not None:
        params = replace(params, seed=seed)
    try:
        table = tabular.read_table(
            csv_path, target, bad, bad_vs_rest=bad_vs_rest, ignore=ignore, params=params
        )
        cv = tabular.cross_validate(table, params)
        summary = tabular.summary(table, cv)
        if registry is not None:
            trained = tabular.fit_final(table, cv, params)
            version = tabular.register(trained, registry)
            summary |= {
                "version": version,
                "path": str(registry.path(version)),
                "calibration": trained.calibration.method,
                "best_iteration": cv.rounds,
            }
    except tabular.TableError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    except RegistryError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(3)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    click.echo(json.dumps(summary))


@click.command("compile")
@common_options
@click.argument("version", required=False)
@click.option(
    "--rows",
    type=click.IntRange(min=1_000),
    default=10_000,
    show_default=True,
    help="Sample rows (drawn within the model's split thresholds, with NaNs) on which the "
    "compiled forest must equal LightGBM's raw score to 1e-9.",
)
def compile_model(
    data_dir: Path | None, config_file: Path | None, version: str | None, rows: int
) -> None:
    """Compile a model's forest with lleaves (default: the current model), check it against
    LightGBM and attach it to the version; print a JSON summary. Exit 2 if any sample row
    differs by more than 1e-9 (nothing is attached), 3 if the model or lleaves is unusable."""
    import time

    from models.compiled import CompileError, compile_version
    from models.registry import ModelRegistry, RegistryError

    started = time.perf_counter()
    registry = ModelRegistry(settings_from(data_dir, config_file).data_dir)
    try:
        result = compile_version(registry, version, rows=rows)
    except (RegistryError, CompileError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(3)
    equivalence = result.equivalence
    if not equivalence.passed:
        click.echo(
            f"error: the compiled forest of model {result.version} differs from LightGBM by "
            f"{equivalence.max_abs_diff} (tolerance {equivalence.tolerance}) on "
            f"{equivalence.rows} sample rows; refusing it (nothing attached, LightGBM serves)",
            err=True,
        )
        sys.exit(2)
    record = result.record
    summary = {
        "version": result.version,
        "path": str(result.path),
        "engine": record["engine"],
        "trees": record["trees"],
        "object_sha256": record["object_sha256"],
        "model_sha256": record["model_sha256"],
        "rows": equivalence.rows,
        "nan_values": equivalence.nan_values,
        "max_abs_diff": equivalence.max_abs_diff,
        "tolerance": equivalence.tolerance,
        "libraries": record["libraries"],
        "compile_seconds": record["compile_seconds"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    click.echo(json.dumps(summary))


@click.command()
@common_options
@click.argument("version")
def promote(data_dir: Path | None, config_file: Path | None, version: str) -> None:
    """Make VERSION the model served by default (e.g. one trained with --no-current and
    judged first); its artifacts are verified against their hashes first. A running
    server keeps its model until it restarts. Prints the previous and new versions."""
    from models.registry import ModelNotFoundError, ModelRegistry, RegistryError

    registry = ModelRegistry(settings_from(data_dir, config_file).data_dir)
    previous = registry.current()
    try:
        registry.load(version)  # hashes, format and the running catalog
        registry.set_current(version)
    except ModelNotFoundError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(3)
    except RegistryError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(json.dumps({"previous": previous, "current": version}))
