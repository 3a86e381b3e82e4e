"""``credit-risk``: the command-line interface.

click is used because it is the well-kept standard for composable, typed command
groups with shared options, and typer adds little over it here.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from service.audit_cli import audit
from service.batch_cli import score_batch
from service.cli_common import common_options, settings_from
from service.demo_cli import demo_data
from service.features_cli import features
from service.models_cli import compile_model, promote, report, train, train_table
from service.server_cli import clients, health, score, serve
from service.watch_cli import alerts, watch


class _Commands(click.Group):
    """The command group; the one place where a domain error that is the user's to fix
    (the store held by another process, no model registered, a store from a newer
    release) becomes a plain ``Error: ...`` and exit status 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as err:
            # Imported here: the CLI starts without loading the domain packages.
            from models.registry import ModelNotFoundError
            from records.store import StoreLockedError, StoreVersionError

            if isinstance(err, StoreLockedError | StoreVersionError | ModelNotFoundError):
                raise click.ClickException(str(err)) from None
            raise


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="credit-risk-service")
def main() -> None:
    """Credit-information and risk-scoring service."""


main.add_command(features)
main.add_command(train)
main.add_command(report)
main.add_command(train_table)
main.add_command(compile_model)
main.add_command(promote)
main.add_command(serve)
main.add_command(score)
main.add_command(clients)
main.add_command(health)
main.add_command(audit)
main.add_command(score_batch)
main.add_command(demo_data)
main.add_command(watch)
main.add_command(alerts)


@main.command("store-info")
@common_options
def store_info(data_dir: Path | None, config_file: Path | None) -> None:
    """Open (and migrate) the records store; print its version and row counts as JSON."""
    from records.runtime import open_store
    from records.tables import TABLE_ORDER

    settings = settings_from(data_dir, config_file)
    with open_store(settings) as store:
        info = {
            "store": str(settings.store_path),
            "schema_version": store.schema_version(),
            "rows": {table: store.count(table) for table in (*TABLE_ORDER, "quarantine")},
            "sample_entities": [
                row[0]
                for row in store.query(
                    "SELECT DISTINCT uscc FROM legal_entity ORDER BY uscc LIMIT 3"
                )
            ],
        }
    click.echo(json.dumps(info, indent=2))


@main.command()
@common_options
@click.argument("table")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--normalise",
    is_flag=True,
    help="Explicitly normalise identifiers and codes (NFKC, trim, upper-case); recorded.",
)
def ingest(
    data_dir: Path | None,
    config_file: Path | None,
    table: str,
    files: tuple[Path, ...],
    as_json: bool,
    normalise: bool,
) -> None:
    """Ingest CSV or Parquet FILES into TABLE, one transaction per file."""
    from records.ingest import IngestError, IngestSummary
    from records.runtime import make_ingestor, open_store
    from records.tables import TABLES

    if table not in TABLES:
        raise click.BadParameter(f"unknown table {table!r}; one of: {', '.join(TABLES)}")
    settings = settings_from(data_dir, config_file)
    total = IngestSummary(table=table)
    failures: list[str] = []
    with open_store(settings) as store:
        ingestor = make_ingestor(settings, store, normalise=normalise, progress=not as_json)
        for path in files:
            try:
                total.add(ingestor.ingest_file(table, path))
            except IngestError as err:
                failures.append(str(err))
                click.echo(f"error: {err}", err=True)
    if as_json:
        payload = total.to_dict() | {"failed_files": failures}
        click.echo(json.dumps(payload, sort_keys=True))
    else:
        _print_summary(total)
        for failure in failures:
            click.echo(f"failed: {failure}")
    if failures:
        sys.exit(1)


def _print_summary(summary: Any) -> None:
    rate = summary.read / summary.seconds if summary.seconds else 0.0
    click.echo(
        f"{summary.table}: read {summary.read:,} = accepted {summary.accepted:,} "
        f"+ duplicate {summary.duplicate:,} + rejected {summary.rejected:,} "
        f"({summary.seconds:.1f} s, {rate:,.0f} rows/s)"
    )
    for reason, count in sorted(summary.reasons.items()):
        click.echo(f"  rejected {reason}: {count:,}")


@main.command()
@common_options
@click.option("--entities", type=click.IntRange(min=0), default=2_000, show_default=True)
@click.option("--persons", type=click.IntRange(min=1), default=5_000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--end-date",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default="2026-06-30",
    show_default=True,
    help="Last reporting day of the generated history.",
)
@click.option("--months", type=click.IntRange(min=1, max=120), default=36, show_default=True)
@click.option(
    "--to-files",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write one file per table (and manifest.json) here instead of into the store.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
)
@click.option(
    "--dirty",
    type=click.FloatRange(min=0.0, max=0.5),
    default=0.0,
    help="Append this fraction of faulty rows (invalid identifiers, impossible dates, "
    "duplicates, conflicting versions, ...) for testing ingestion.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def generate(
    data_dir: Path | None,
    config_file: Path | None,
    entities: int,
    persons: int,
    seed: int,
    end_date: Any,
    months: int,
    to_files: Path | None,
    file_format: str,
    dirty: float,
    as_json: bool,
) -> None:
    """Generate a synthetic province (deterministic per seed) into the store or files."""
    import time

    from records.generator import (
        InjectedFault,
        ProvinceParams,
        generate_province,
        inject_faults,
        write_files,
    )
    from records.runtime import ingest_frames, make_ingestor, open_store
    from records.tables import TABLE_ORDER

    settings = settings_from(data_dir, config_file)
    params = ProvinceParams(
        entities=entities,
        persons=persons,
        seed=seed,
        end_date=date.fromisoformat(end_date.date().isoformat()),
        months=months,
        home_province=settings.home_province,
    )
    started = time.perf_counter()
    frames = generate_province(params)
    faults: list[InjectedFault] = []
    if dirty > 0:
        frames, faults = inject_faults(frames, dirty, seed)
    generated_seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        "params": {k: str(v) for k, v in vars(params).items()},
        "rows": {t: frames[t].height for t in TABLE_ORDER},
        "faults": len(faults),
        "generate_seconds": round(generated_seconds, 2),
    }
    if to_files is not None:
        paths = write_files(
            frames, to_files, "parquet" if file_format == "parquet" else "csv", faults
        )
        report["files"] = [str(p) for p in paths]
    else:
        with open_store(settings) as store:
            ingestor = make_ingestor(settings, store, progress=not as_json)
            summaries = ingest_frames(ingestor, frames, label=f"generator:seed={seed}")
            report["ingested"] = {}
            for table, summary in summaries.items():
                report["ingested"][table] = {
                    k: getattr(summary, k) for k in ("read", "accepted", "duplicate", "rejected")
                } | {"reasons": summary.reasons}
                if not as_json:
                    _print_summary(summary)
    report["total_seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        click.echo(
            f"generated {sum(report['rows'].values()):,} rows in {report['total_seconds']} s"
        )
        if to_files is not None:
            click.echo(f"files in {to_files}; ingest them in this order: " + ", ".join(TABLE_ORDER))


@main.command()
@click.option("--check", is_flag=True, help="Exit 1 if the generated docs differ from the files.")
@click.option(
    "--docs-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("docs"),
    show_default=True,
)
def docs(check: bool, docs_dir: Path) -> None:
    """Regenerate the catalog documents in docs/ from their declarations."""
    from features.catalog_doc import render_features_doc
    from features.warnings_doc import render_warnings_doc
    from records.catalog_doc import render_data_format

    documents = {
        "data-format.md": render_data_format(),
        "features.md": render_features_doc(),
        "warnings.md": render_warnings_doc(),
    }
    stale = []
    for name, text in documents.items():
        path = docs_dir / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        click.echo(f"stale: {', '.join(stale)}; run `credit-risk docs`", err=True)
        sys.exit(1)
    click.echo("up to date" if not stale else f"wrote {', '.join(stale)}")


if __name__ == "__main__":
    main()
