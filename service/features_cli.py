"""``credit-risk features ...``: materialise, show and export point-in-time features."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from service.cli_common import common_options, settings_from

__all__ = ["features"]


def _as_of(value: datetime) -> date:
    return value.date()


AS_OF = click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    required=True,
    help="Features as of the end of this day (YYYY-MM-DD).",
)


@click.group()
def features() -> None:
    """Point-in-time features: materialise, show one subject, export."""


def _subject_key(settings: Any, uscc: str | None, resident_id: str | None) -> str:
    from records.identifiers import InvalidIdentifier, validate_resident_id, validate_uscc
    from records.runtime import make_pseudonymiser

    if (uscc is None) == (resident_id is None):
        raise click.UsageError("give exactly one of --uscc or --resident-id")
    try:
        if uscc is not None:
            validate_uscc(uscc)
            return uscc
        assert resident_id is not None
        validate_resident_id(resident_id)
    except InvalidIdentifier as err:
        option = "--uscc" if uscc is not None else "--resident-id"
        raise click.BadParameter(str(err), param_hint=option) from None
    return make_pseudonymiser(settings).person_key(resident_id)


@features.command()
@common_options
@AS_OF
def materialise(data_dir: Path | None, config_file: Path | None, as_of: datetime) -> None:
    """Compute and persist every subject's feature row as of a date."""
    import time

    from features.store import FeatureStore
    from records.runtime import open_store

    settings = settings_from(data_dir, config_file)
    started = time.perf_counter()
    with open_store(settings) as store:
        feature_store = FeatureStore(
            store,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
        )
        rows = feature_store.materialise(_as_of(as_of))
    click.echo(
        json.dumps(
            {
                "as_of": _as_of(as_of).isoformat(),
                "subjects": rows.height,
                "catalog_hash": feature_store.catalog_hash,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )


@features.command()
@common_options
@AS_OF
@click.option("--uscc", default=None, help="Unified Social Credit Code of a legal entity.")
@click.option("--resident-id", default=None, help="Resident identity number of a person.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(
    data_dir: Path | None,
    config_file: Path | None,
    as_of: datetime,
    uscc: str | None,
    resident_id: str | None,
    as_json: bool,
) -> None:
    """One subject's feature row, with each feature's description."""
    from features.catalog import CATALOG
    from features.pipeline import build
    from records.runtime import open_store

    settings = settings_from(data_dir, config_file)
    key = _subject_key(settings, uscc, resident_id)
    with open_store(settings, read_only=False) as store:
        rows = build(
            store,
            _as_of(as_of),
            [key],
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
        )
    if rows.height == 0:
        click.echo(f"error: no such subject on file as of {_as_of(as_of)}", err=True)
        sys.exit(3)
    row = rows.row(0, named=True)
    if as_json:
        click.echo(json.dumps(row, default=str, sort_keys=False))
        return
    click.echo(f"{row['subject_type']} {row['subject_key']} as of {_as_of(as_of)}")
    for spec in CATALOG:
        value = row[spec.name]
        if value is None and row["subject_type"] not in spec.kinds:
            continue
        shown = (
            "—" if value is None else (f"{value:,.4g}" if isinstance(value, float) else str(value))
        )
        click.echo(f"  {spec.name:<40} {shown:>14}  {spec.description}")


@features.command()
@common_options
@AS_OF
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Parquet file to write.",
)
@click.option(
    "--subjects",
    "subjects_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="File with one USCC or resident identity number per line.",
)
def export(
    data_dir: Path | None,
    config_file: Path | None,
    as_of: datetime,
    out: Path,
    subjects_file: Path | None,
) -> None:
    """Write the feature table (subject key first, then the catalog's columns) to Parquet."""
    from features.pipeline import build
    from records.runtime import make_pseudonymiser, open_store
    from service.subject_lists import read_subject_list

    settings = settings_from(data_dir, config_file)
    keys: list[str] | None = None
    if subjects_file is not None:
        parsed = read_subject_list(subjects_file, make_pseudonymiser(settings))
        for problem in parsed.problems:
            click.echo(f"{subjects_file}:{problem.line}: {problem.message}", err=True)
        keys = parsed.keys
    with open_store(settings) as store:
        rows = build(
            store,
            _as_of(as_of),
            keys,
            home_province=settings.home_province,
            retention_years=settings.features.retention_years,
        )
    if keys is not None:
        missing = len(set(keys)) - rows.height
        if missing:
            click.echo(f"{missing} listed subject(s) not on file as of {_as_of(as_of)}", err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.select("subject_key", *[c for c in rows.columns if c != "subject_key"]).write_parquet(out)
    click.echo(json.dumps({"out": str(out), "rows": rows.height}))
