"""``credit-risk serve``, ``credit-risk score`` (the human client) and ``credit-risk clients``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from records.tables import INQUIRY_PURPOSES
from service.cli_common import (
    API_KEY_ENV,
    ClientOptions,
    client_options,
    common_options,
    open_channel,
    rpc_error,
    settings_from,
)
from service.clients import REGISTRY_TABLES

__all__ = ["clients", "health", "score", "serve"]


@click.command()
@common_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Default 50051.")
@click.option(
    "--demo",
    is_flag=True,
    help="First make what the data directory lacks: a demo province, a model, a feature "
    "snapshot; issue demo client keys and print them.",
)
@click.option("--log-level", default="INFO", show_default=True)
def serve(
    data_dir: Path | None,
    config_file: Path | None,
    host: str | None,
    port: int | None,
    demo: bool,
    log_level: str,
) -> None:
    """Serve CreditRisk over gRPC until SIGTERM or Ctrl-C (then drain and stop)."""
    from service.logs import configure_logging
    from service.server import CreditRiskServer

    configure_logging(log_level.upper())
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings_from(data_dir, config_file, server=overrides or None)
    keys: dict[str, str] = {}
    sample = None
    if demo:
        from service.demo import prepare_demo

        result = prepare_demo(settings, echo=lambda line: click.echo(line, err=True))
        keys, sample = result.keys, result.sample_uscc
    try:
        server = CreditRiskServer(settings)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    server.start()
    target = f"{settings.server.host}:{server.port}"
    click.echo(
        f"listening on {target} ({'TLS' if server.tls else 'plaintext'}); loading the model "
        "and features (health: NOT_SERVING until ready)",
        err=True,
    )
    stop = threading.Event()
    failure: list[BaseException] = []

    def load() -> None:
        try:
            server.load_and_serve()
        except BaseException as err:  # reported below, then the server stops
            failure.append(err)
            stop.set()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loader = threading.Thread(target=load, name="loader", daemon=True)
    loader.start()
    while loader.is_alive() and not stop.is_set():
        loader.join(0.2)
    if not failure and not stop.is_set():
        _print_ready(target, server, keys, sample)
    while not stop.wait(0.5):
        pass
    click.echo("stopping: draining in-flight calls ...", err=True)
    server.stop()
    if failure:
        logging.getLogger("creditrisk.server").error(
            "could not load the model and features", exc_info=failure[0]
        )
        click.echo(f"error: {failure[0]}", err=True)
        sys.exit(1)
    click.echo("stopped", err=True)


def _print_ready(target: str, server: Any, keys: dict[str, str], sample: str | None) -> None:
    runtime = server.runtime
    click.echo(
        f"SERVING on {target}: model {runtime.model.version}, {len(runtime.book):,} subjects "
        f"as of {runtime.book.as_of}, loaded in {runtime.load_seconds:.1f} s",
        err=True,
    )
    if server.metrics_port is not None:
        click.echo(
            f"metrics: http://{server.settings.server.metrics_host}:{server.metrics_port}/metrics",
            err=True,
        )
    for name, key in keys.items():
        click.echo(f"demo key {name}: {key}", err=True)
    if "demo-lender" in keys:
        uscc = sample or "<USCC>"
        click.echo("\ntry, in another terminal:", err=True)
        click.echo(
            f"  {API_KEY_ENV}={keys['demo-lender']} .venv/bin/credit-risk score "
            f"--target {target} --uscc {uscc} --explain",
            err=True,
        )
        click.echo("post-loan monitoring: watch the subject, then stream its alerts:", err=True)
        click.echo(
            f"  echo {uscc},loan-1 > portfolio.txt && {API_KEY_ENV}={keys['demo-lender']} "
            f".venv/bin/credit-risk watch add portfolio.txt --target {target}",
            err=True,
        )
        click.echo(
            f"  {API_KEY_ENV}={keys['demo-lender']} .venv/bin/credit-risk alerts "
            f"--target {target}    # alerts follow records reported over Records.SubmitRecords",
            err=True,
        )


@click.command()
@client_options
@click.option("--uscc", default=None, help="Unified Social Credit Code of a legal entity.")
@click.option("--resident-id", default=None, help="Resident identity number of a person.")
@click.option(
    "--purpose", type=click.Choice(INQUIRY_PURPOSES), default="loan_approval", show_default=True
)
@click.option("--authorization-id", default="", help="The subject's consent reference.")
@click.option("--request-id", default="", help="Idempotency key.")
@click.option("--explain", is_flag=True, help="Ask for the reason codes.")
@click.option("--warnings-only", is_flag=True, help="Call GetWarnings instead of Score.")
def score(
    client: ClientOptions,
    uscc: str | None,
    resident_id: str | None,
    purpose: str,
    authorization_id: str,
    request_id: str,
    explain: bool,
    warnings_only: bool,
) -> None:
    """Score one subject through a running server and print the answer as JSON."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc
    from service.codec import PURPOSE_VALUES

    if (uscc is None) == (resident_id is None):
        raise click.UsageError("give exactly one of --uscc or --resident-id")
    metadata = client.metadata()
    subject = common_pb2.Subject(uscc=uscc) if uscc else common_pb2.Subject(resident_id=resident_id)
    purpose_value = PURPOSE_VALUES[purpose]
    channel = open_channel(client)
    stub = credit_risk_pb2_grpc.CreditRiskStub(channel)  # type: ignore[no-untyped-call]
    try:
        if warnings_only:
            response: Any = stub.GetWarnings(
                credit_risk_pb2.WarningsRequest(
                    subject=subject,
                    purpose=purpose_value,
                    authorization_id=authorization_id,
                    request_id=request_id,
                ),
                metadata=metadata,
                timeout=client.timeout,
            )
        else:
            response = stub.Score(
                credit_risk_pb2.ScoreRequest(
                    subject=subject,
                    purpose=purpose_value,
                    authorization_id=authorization_id,
                    request_id=request_id,
                    explain=explain,
                ),
                metadata=metadata,
                timeout=client.timeout,
            )
    except grpc.RpcError as err:
        click.echo(json.dumps({"error": rpc_error(err)}, ensure_ascii=False), err=True)
        sys.exit(1)
    finally:
        channel.close()
    click.echo(
        json.dumps(
            MessageToDict(response, preserving_proto_field_name=True),
            indent=2,
            ensure_ascii=False,
        )
    )


@click.command()
@click.option("--target", default="127.0.0.1:50051", show_default=True)
@click.option(
    "--service",
    default="",
    help="Service name to ask about (default: the server as a whole).",
)
@click.option(
    "--ca",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="CA certificate (PEM) to trust: connect with TLS.",
)
@click.option("--timeout", type=float, default=3.0, show_default=True)
def health(target: str, service: str, ca: Path | None, timeout: float) -> None:
    """Ask a server's standard gRPC health service; exit 0 only if it is SERVING (for
    container health checks)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if ca is not None:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read_bytes()))
    else:
        channel = grpc.insecure_channel(target)
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    except grpc.RpcError as err:
        status = err.code().name
    finally:
        channel.close()
    click.echo(status)
    if status != "SERVING":
        sys.exit(1)


@click.group()
def clients() -> None:
    """API clients: keys (stored as hashes), roles and quotas."""


@clients.command("add")
@common_options
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["lender", "agency", "regulator", "reporter", "admin"]),
)
@click.option(
    "--quota",
    type=click.FloatRange(min=0.001),
    default=100.0,
    show_default=True,
    help="Calls (decisions) per second, sustained.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=None,
    help="Calls allowed at once (default: one second's quota).",
)
@click.option(
    "--registry",
    "registries",
    multiple=True,
    type=click.Choice(REGISTRY_TABLES),
    help="A registry table (keyed without source) the reporter may report; repeatable.",
)
def clients_add(
    data_dir: Path | None,
    config_file: Path | None,
    name: str,
    role: str,
    quota: float,
    burst: int | None,
    registries: tuple[str, ...],
) -> None:
    """Register client NAME; its key is printed once, alone on the last line."""
    from service.clients import ClientRegistry, ClientsFileError

    settings = settings_from(data_dir, config_file)
    try:
        client, key = ClientRegistry(settings.clients_path).add(
            name, role, quota_per_second=quota, burst=burst or 0, registries=registries
        )
    except ClientsFileError as err:
        raise click.ClickException(str(err)) from None
    click.echo(
        f"client {client.name} ({client.role.value}, {client.quota_per_second:g}/s, burst "
        f"{client.burst}) added to {settings.clients_path}; its key, shown only now:"
    )
    click.echo(key)


@clients.command("list")
@common_options
def clients_list(data_dir: Path | None, config_file: Path | None) -> None:
    """Print the registered clients as JSON (no keys: only their hashes are kept)."""
    from service.clients import ClientRegistry

    settings = settings_from(data_dir, config_file)
    rows = [
        {
            "name": c.name,
            "role": c.role.value,
            "quota_per_second": c.quota_per_second,
            "burst": c.burst,
            "created_at": c.created_at,
            "registries": list(c.registries),
        }
        for c in ClientRegistry(settings.clients_path).clients()
    ]
    click.echo(json.dumps(rows, indent=2))


@clients.command("revoke")
@common_options
@click.argument("name")
def clients_revoke(data_dir: Path | None, config_file: Path | None, name: str) -> None:
    """Remove client NAME; a running server refuses its key within a second."""
    from service.clients import ClientRegistry, ClientsFileError

    settings = settings_from(data_dir, config_file)
    try:
        ClientRegistry(settings.clients_path).revoke(name)
    except ClientsFileError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"client {name} revoked")
