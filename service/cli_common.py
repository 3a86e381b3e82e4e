"""Options and helpers shared by every ``credit-risk`` subcommand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError

from settings import ConfigFileError, Settings, load_settings

__all__ = [
    "API_KEY_ENV",
    "ClientOptions",
    "client_options",
    "common_options",
    "open_channel",
    "rpc_error",
    "settings_from",
]

if TYPE_CHECKING:
    import grpc

F = TypeVar("F", bound=Callable[..., Any])
API_KEY_ENV = "CREDIT_RISK_API_KEY"


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


@dataclass(frozen=True)
class ClientOptions:
    """How a client command reaches a running server."""

    target: str
    key: str | None
    ca: Path | None
    cert: Path | None
    cert_key: Path | None
    timeout: float

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.key:
            raise click.UsageError(f"no API key: pass --key or set ${API_KEY_ENV}")
        return (("authorization", f"Bearer {self.key}"),)


def client_options(command: F) -> F:
    """--target, --key, --ca, --cert, --cert-key and --timeout of the client commands,
    passed to the command as one ``client: ClientOptions`` argument."""
    path = click.Path(path_type=Path, dir_okay=False)
    options = [
        click.option("--target", default="127.0.0.1:50051", show_default=True),
        click.option(
            "--key", envvar=API_KEY_ENV, default=None, help=f"API key (or ${API_KEY_ENV})."
        ),
        click.option(
            "--ca", type=path, default=None, help="CA certificate (PEM) to trust: connect with TLS."
        ),
        click.option(
            "--cert", type=path, default=None, help="Client certificate (PEM), for mutual TLS."
        ),
        click.option(
            "--cert-key", type=path, default=None, help="Client certificate's private key (PEM)."
        ),
        click.option(
            "--timeout", type=float, default=10.0, show_default=True, help="Seconds per call."
        ),
    ]

    def run(**kwargs: Any) -> Any:
        client = ClientOptions(
            kwargs.pop("target"),
            kwargs.pop("key"),
            kwargs.pop("ca"),
            kwargs.pop("cert"),
            kwargs.pop("cert_key"),
            kwargs.pop("timeout"),
        )
        return command(client=client, **kwargs)

    run.__name__ = command.__name__
    run.__doc__ = command.__doc__
    for option in reversed(options):
        run = option(run)
    if hasattr(command, "__click_params__"):
        run.__click_params__ = [*command.__click_params__, *run.__click_params__]  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def open_channel(client: ClientOptions) -> grpc.Channel:
    import grpc

    if client.ca is None:
        return grpc.insecure_channel(client.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=client.ca.read_bytes(),
        private_key=client.cert_key.read_bytes() if client.cert_key else None,
        certificate_chain=client.cert.read_bytes() if client.cert else None,
    )
    return grpc.secure_channel(client.target, credentials)


def rpc_error(err: grpc.RpcError) -> dict[str, Any]:
    """A failed call as JSON-ready values: code, message, field violations, retry delay."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    problem: dict[str, Any] = {"code": err.code().name, "message": err.details()}
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            problem["field_violations"] = [
                {"field": v.field, "reason": v.reason} for v in bad.field_violations
            ]
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            problem["retry_after_seconds"] = retry.retry_delay.ToTimedelta().total_seconds()
    return problem
