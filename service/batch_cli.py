"""``credit-risk score-batch``: the click side of :mod:`service.batch`."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from pathlib import Path

import click

from service.cli_common import common_options, settings_from

__all__ = ["DUCKDB_SUFFIX", "score_batch"]

DUCKDB_SUFFIX = ".duckdb"
"""An ``--out`` with this suffix (any case) is a DuckDB database; any other, a Parquet file."""


def _table_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from service.batch import table_name_problem

    problem = table_name_problem(value)
    if problem:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


@click.command("score-batch")
@common_options
@click.option("--as-of", "as_of", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option(
    "--subjects",
    "subjects_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="One USCC or resident id a line ('#' comments); bad lines are reported, not fatal.",
)
@click.option("--all", "all_subjects", is_flag=True, help="Every subject of the store.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A Parquet file; or, named *.duckdb, a DuckDB database (created if missing) to "
    "hold the rows in the table --table.",
)
@click.option(
    "--table",
    metavar="NAME",
    callback=_table_name,
    help="--out *.duckdb: the table to create, a plain SQL identifier; an existing table "
    "is never replaced  [default: scores_<as-of as YYYY_MM_DD>]",
)
@click.option("--chunk-rows", default=10_000, show_default=True, type=click.IntRange(min=1))
@click.option("--purpose", default="credit_review", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
@click.option(
    "--engine",
    type=click.Choice(["local", "dask", "dask-local"]),
    default="local",
    show_default=True,
    help="Where chunks are decided: --workers local processes, an existing Dask cluster "
    "(--scheduler), or a Dask LocalCluster of --workers processes. Logging and output stay "
    "with this process.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="--engine dask: the scheduler, e.g. tcp://scheduler:8786 (its workers must see "
    "the data directory and --out's directory at the same paths).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="--engine local or dask-local: worker processes  [default: cores]",
)
def score_batch(
    data_dir: Path | None,
    config_file: Path | None,
    as_of: datetime,
    subjects_file: Path | None,
    all_subjects: bool,
    out: Path,
    table: str | None,
    chunk_rows: int,
    purpose: str,
    no_progress: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
) -> None:
    """Score subjects as of a date into Parquet or a DuckDB table, logging every decision;
    resumable: run the same command again after an interruption. Prints a JSON summary."""
    from tqdm import tqdm

    from service.batch import BatchError, BatchJob, run_batch, store_conflict

    if (subjects_file is None) == (not all_subjects):
        raise click.UsageError("give exactly one of --subjects FILE and --all")
    if (engine == "dask") != (scheduler is not None):
        raise click.UsageError("--scheduler goes with --engine dask, and it needs one")
    if workers is not None and engine == "dask":
        raise click.UsageError("--workers goes with --engine local or dask-local")
    if out.suffix.lower() == DUCKDB_SUFFIX:
        table = table or f"scores_{as_of:%Y_%m_%d}"
    elif table is not None:
        raise click.UsageError(
            f"--table goes with a DuckDB --out (a name ending in {DUCKDB_SUFFIX})"
        )
    settings = settings_from(data_dir, config_file)
    if problem := store_conflict(settings, out):
        raise click.BadParameter(problem, param_hint="'--out'")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "cli"
    job = BatchJob(
        as_of=as_of.date(),
        out=out,
        subjects_file=subjects_file,
        chunk_rows=chunk_rows,
        client=f"batch:{user}",
        purpose=purpose,
        engine=engine,
        scheduler=scheduler,
        workers=workers,
        table=table,
    )
    with tqdm(desc="score-batch", unit="subject", disable=no_progress) as bar:
        try:
            result = run_batch(
                settings, job, progress=bar.update, total=lambda n: setattr(bar, "total", n)
            )
        except BatchError as err:
            raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result.summary, indent=2))
