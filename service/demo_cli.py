"""``credit-risk demo-data``: what ``serve --demo`` makes first, without serving (for a
one-shot container that prepares the shared data volume before the batch job and the
server start)."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli_common import common_options, settings_from

__all__ = ["demo_data"]


@click.command("demo-data")
@common_options
def demo_data(data_dir: Path | None, config_file: Path | None) -> None:
    """Make what the data directory lacks for the demo (a generated province, a trained
    model, a feature snapshot), issue fresh demo client keys and print them, with a USCC
    to try."""
    from service.demo import prepare_demo

    settings = settings_from(data_dir, config_file)
    result = prepare_demo(settings, echo=lambda line: click.echo(line, err=True))
    click.echo(f"ready: {', '.join(result.steps)}; features as of {result.as_of}", err=True)
    for name, key in result.keys.items():
        click.echo(f"demo key {name}: {key}")
    if result.sample_uscc:
        click.echo(f"sample uscc: {result.sample_uscc}")
