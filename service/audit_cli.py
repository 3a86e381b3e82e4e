"""``credit-risk audit ...``: the regulator's commands on the decision log."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from service.cli_common import common_options, settings_from

if TYPE_CHECKING:
    from records.store import RecordStore

__all__ = ["audit"]


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date or time option; without a zone it is UTC (see verify_log)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None


@click.group()
def audit() -> None:
    """The decision log: verify the hash chain, replay a decision, monitoring reports."""


@audit.command()
@common_options
@click.option(
    "--from",
    "from_time",
    metavar="ISO-8601",
    callback=_iso_time,
    help="Count entries from this time on (inclusive; no zone = UTC).",
)
@click.option(
    "--to",
    "to_time",
    metavar="ISO-8601",
    callback=_iso_time,
    help="Count entries before this time (exclusive; no zone = UTC).",
)
def verify(
    data_dir: Path | None,
    config_file: Path | None,
    from_time: datetime | None,
    to_time: datetime | None,
) -> None:
    """Walk the whole hash chain of the decision log and print one JSON object: ok,
    entries (in the time range), and where and why the first break is. Exit status 0 only
    for an intact chain, 1 otherwise. The range only limits what is counted: the chain is
    always checked from its first entry to its last."""
    from audit.verify import verify_log

    settings = settings_from(data_dir, config_file)
    result = verify_log(settings.audit_log_path, from_time=from_time, to_time=to_time)
    click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
    sys.exit(0 if result.ok else 1)


@audit.command()
@common_options
@click.argument("decision_id")
def replay(data_dir: Path | None, config_file: Path | None, decision_id: str) -> None:
    """Replay logged decision DECISION_ID: recompute it from its recorded feature vector
    with its recorded model version, and its features and warning flags from the records
    store as of its recorded date; print one JSON report naming every field that differs.
    Exit status 0 only for a bit-exact match. (The store must not be open in a running
    server; the Audit service's ReplayDecision replays inside it.)"""
    from audit.log import find_decision
    from audit.replay import replay_decision
    from models.registry import ModelNotFoundError
    from records.runtime import open_store

    settings = settings_from(data_dir, config_file)
    entry = find_decision(settings.audit_log_path, decision_id)
    if entry is None:
        raise click.ClickException(f"no decision {decision_id} in {settings.audit_log_path}")
    try:
        with open_store(settings, read_only=True) as store:
            report = replay_decision(
                entry.body,
                data_dir=settings.data_dir,
                store=store,
                home_province=settings.home_province,
                retention_years=settings.features.retention_years,
            )
    except ModelNotFoundError as err:
        raise click.ClickException(f"cannot replay: {err}") from None
    click.echo(json.dumps({"sequence": entry.sequence, **report.to_dict()}, indent=2))
    sys.exit(0 if report.ok else 1)


@audit.command()
@common_options
@click.option("--version", "version", help="A registered model version (default: the current).")
@click.option(
    "--from",
    "from_time",
    metavar="ISO-8601",
    callback=_iso_time,
    help="Decisions logged from this time on (inclusive; no zone = UTC).",
)
@click.option(
    "--to",
    "to_time",
    metavar="ISO-8601",
    callback=_iso_time,
    help="Decisions logged before this time (exclusive; no zone = UTC).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report as one self-contained HTML page (figures embedded) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON on stdout.")
def report(
    data_dir: Path | None,
    config_file: Path | None,
    version: str | None,
    from_time: datetime | None,
    to_time: datetime | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """The monitoring report of a model over the decisions it served: PSI of the score and
    of every feature against its training data (0.10 / 0.25 bands), the grade mix by day,
    and the fairness view (score and observed bad rate by region and age band; by gender if
    audit.fairness_by_gender). Reads the decision log without opening it; the bad rate
    needs the records store, which cannot be opened while a server holds it (the report
    then says so; the Audit service's GetModelReport has it)."""
    from audit.monitoring import monitoring_report
    from audit.monitoring_html import render_monitoring_html
    from models.registry import ModelNotFoundError
    from records.runtime import open_store

    if out is None and not as_json:
        raise click.UsageError("give --out FILE.html, --json, or both")
    settings = settings_from(data_dir, config_file)

    def build(store: RecordStore | None, note: str | None = None) -> dict[str, Any]:
        return monitoring_report(
            settings.data_dir,
            settings.audit_log_path,
            version=version,
            from_time=from_time,
            to_time=to_time,
            store=store,
            outcome_note=note,
            by_gender=settings.audit.fairness_by_gender,
        )

    try:
        try:
            store = open_store(settings, read_only=True)
        except Exception as err:  # locked by a running server, missing, ...
            result = build(None, f"the records store could not be opened ({type(err).__name__})")
        else:
            with store:
                result = build(store)
    except ModelNotFoundError as err:
        raise click.ClickException(str(err)) from None
    if out is not None:
        out.write_text(render_monitoring_html(result), encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=1, sort_keys=True))
