"""``credit-risk watch add|remove FILE`` and ``credit-risk alerts``: a lender's human client
for its watchlist and its alert stream (through a running server, like ``score``)."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import click

from records.identifiers import InvalidIdentifier, validate_uscc
from service.cli_common import ClientOptions, client_options, open_channel, rpc_error

__all__ = ["alerts", "watch"]

_ITEM = re.compile(r"subjects\[(\d+)\]")
_CHUNK = 1_000  # subjects per Watch / Unwatch call (the server's limit is a setting)


@dataclass(frozen=True)
class WatchLine:
    line: int
    identifier: str
    reference: str
    authorization_id: str


def read_watch_file(path: Path) -> list[WatchLine]:
    """``IDENTIFIER[,REFERENCE[,AUTHORIZATION_ID]]`` a line; blank lines and '#' comments
    skipped. The server checks the identifiers (and names the line's item on an error)."""
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            parts = [part.strip() for part in text.split(",")]
            if len(parts) > 3:
                raise click.UsageError(
                    f"{path}:{number}: at most IDENTIFIER,REFERENCE,AUTHORIZATION_ID"
                )
            parts += [""] * (3 - len(parts))
            out.append(WatchLine(number, parts[0], parts[1], parts[2]))
    return out


def _subject(identifier: str) -> Any:
    from creditrisk.v1 import common_pb2

    try:
        validate_uscc(identifier)
    except InvalidIdentifier:
        return common_pb2.Subject(resident_id=identifier)  # the server says what is wrong
    return common_pb2.Subject(uscc=identifier)


def _fail(err: Any, lines: list[WatchLine], offset: int) -> None:
    """Print the error, naming the file line of the item the server names (in a field
    violation, or at the start of the message)."""
    problem = rpc_error(err)
    named = [problem["message"], *(v["field"] for v in problem.get("field_violations", []))]
    for text in named:
        found = _ITEM.match(text)
        if found and 0 <= int(found.group(1)) + offset < len(lines):
            problem["line"] = lines[int(found.group(1)) + offset].line
            break
    click.echo(json.dumps({"error": problem}, ensure_ascii=False), err=True)
    sys.exit(1)


@click.group()
def watch() -> None:
    """A lender's watchlist (post-loan monitoring) on a running server."""


def _change(client: ClientOptions, path: Path, method: str) -> None:
    import grpc

    from creditrisk.v1 import credit_risk_pb2, credit_risk_pb2_grpc

    lines = read_watch_file(path)
    metadata = client.metadata()
    changed = watched = 0
    with open_channel(client) as channel:
        call = getattr(credit_risk_pb2_grpc.CreditRiskStub(channel), method)  # type: ignore[no-untyped-call]
        for start in range(0, len(lines), _CHUNK):
            part = lines[start : start + _CHUNK]
            request = credit_risk_pb2.WatchlistRequest(
                subjects=[
                    credit_risk_pb2.WatchedSubject(
                        subject=_subject(item.identifier),
                        reference=item.reference,
                        authorization_id=item.authorization_id,
                    )
                    for item in part
                ]
            )
            try:
                answer = call(request, metadata=metadata, timeout=client.timeout)
            except grpc.RpcError as err:
                _fail(err, lines, start)
            changed += answer.changed
            watched = answer.watched
    click.echo(json.dumps({"subjects": len(lines), "changed": changed, "watched": watched}))


@watch.command("add")
@client_options
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def watch_add(client: ClientOptions, file: Path) -> None:
    """Watch the subjects of FILE (IDENTIFIER[,REFERENCE[,AUTHORIZATION_ID]] a line; a
    natural person needs the authorization id); prints the counts as JSON."""
    _change(client, file, "Watch")


@watch.command("remove")
@client_options
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def watch_remove(client: ClientOptions, file: Path) -> None:
    """Stop watching the subjects of FILE (same format; references are ignored)."""
    _change(client, file, "Unwatch")


_KINDS = ("raised", "cleared", "grade_change", "score_move")


@click.command()
@client_options
@click.option(
    "--after", type=click.IntRange(min=0), default=None, help="Resume after this alert id."
)
@click.option("--kind", "kinds", multiple=True, type=click.Choice(_KINDS), help="Only these.")
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Stop after this many alerts."
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after this long (default: stream until interrupted).",
)
def alerts(
    client: ClientOptions,
    after: int | None,
    kinds: tuple[str, ...],
    count: int | None,
    seconds: float | None,
) -> None:
    """Stream the lender's alerts as JSON lines until interrupted, --count or --seconds;
    resume with --after LAST_ID. --timeout does not apply: the stream stays open."""
    import grpc
    from google.protobuf.json_format import MessageToDict

    from creditrisk.v1 import credit_risk_pb2, credit_risk_pb2_grpc

    request = credit_risk_pb2.WatchRequest()
    request.kinds.extend(
        [cast(Any, credit_risk_pb2.AlertKind.Value(f"ALERT_KIND_{k.upper()}")) for k in kinds]
    )
    if after is not None:
        request.after_alert_id = after
    metadata = client.metadata()
    with open_channel(client) as channel:
        stub = credit_risk_pb2_grpc.CreditRiskStub(channel)  # type: ignore[no-untyped-call]
        stream = stub.WatchAlerts(request, metadata=metadata, timeout=seconds)
        seen = 0
        try:
            for alert in stream:
                click.echo(
                    json.dumps(
                        MessageToDict(alert, preserving_proto_field_name=True), ensure_ascii=False
                    )
                )
                seen += 1
                if count is not None and seen >= count:
                    stream.cancel()
                    break
        except grpc.RpcError as err:
            ended = (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
            if err.code() not in ended:
                click.echo(json.dumps({"error": rpc_error(err)}, ensure_ascii=False), err=True)
                sys.exit(1)
        except KeyboardInterrupt:
            stream.cancel()
