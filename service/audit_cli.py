"""``credit-risk audit ...``: the regulator's commands on the decision log."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from service.cli_common import common_options, settings_from

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
    """The decision log: verify the hash chain."""


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
