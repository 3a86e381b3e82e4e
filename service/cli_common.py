"""Options and helpers shared by every ``credit-risk`` subcommand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from settings import ConfigFileError, Settings, load_settings

__all__ = ["common_options", "settings_from"]

F = TypeVar("F", bound=Callable[..., Any])


def common_options(command: F) -> F:
    """--data-dir and --config, accepted by every subcommand."""
    command = click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        default=None,
        help="TOML config file (default: $CREDIT_RISK_CONFIG).",
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Directory of all runtime state (default: $CREDIT_RISK_DATA_DIR or ./var).",
    )(command)
    return command


def settings_from(data_dir: Path | None, config_file: Path | None, **overrides: Any) -> Settings:
    """The settings, with ``--data-dir`` and any other explicit overrides (None = unset);
    invalid settings become a usage error that names the setting."""
    try:
        return load_settings(config_file, data_dir=data_dir, **overrides)
    except ConfigFileError as err:
        raise click.UsageError(str(err)) from None
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise click.UsageError(f"invalid settings: {problems}") from None
