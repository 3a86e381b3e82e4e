"""docker/: no Docker engine runs here, so the Dockerfile and the compose file are checked
by reading them: every ``credit-risk`` (and ``dask``) command they run must parse with the
real click commands (names, options, option values), and the deployment must have the
shape issue 7 asks for (server, one-shot batch job, a Dask scheduler and two workers, one
shared data volume, a non-root image with a gRPC health check)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # (a dependency of dask)
from distributed.cli import dask_scheduler, dask_worker

from service.cli import main
from service.demo import DemoPlan

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
PROGRAMS: dict[str, click.Command] = {"credit-risk": main}
DASK = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    return loaded


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped)."""
    lines = [
        line
        for line in (DOCKER / "Dockerfile").read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _argv(text: str) -> list[str]:
    """A Dockerfile command: exec form (a JSON array) or shell form."""
    return list(json.loads(text)) if text.startswith("[") else shlex.split(text)


def _commands(argv: list[str]) -> list[list[str]]:
    """The programs an argv runs: itself, or each command of a ``sh -c`` script."""
    if argv[:1] == ["CMD"]:
        argv = argv[1:]
    elif argv[:1] == ["CMD-SHELL"]:
        argv = ["sh", "-c", argv[1]]
    if len(argv) >= 3 and argv[0] in {"sh", "bash"} and argv[1] == "-c":
        parts = re.split(r"&&|\|\||;", argv[2])
        return [shlex.split(part) for part in parts if part.strip()]
    return [argv]


def _dockerfile_commands() -> list[list[str]]:
    found = []
    for keyword, rest in _instructions():
        if keyword in {"CMD", "ENTRYPOINT", "RUN"}:
            found += _commands(_argv(rest))
        elif keyword == "HEALTHCHECK":
            found += _commands(_argv(rest.split(" CMD ", 1)[1]))
    return found


def _compose_commands() -> list[list[str]]:
    found = []
    for service in _compose()["services"].values():
        for key in ("entrypoint", "command"):
            if key in service:
                value = service[key]
                found += _commands(value if isinstance(value, list) else shlex.split(value))
        test = service.get("healthcheck", {}).get("test")
        if test:
            found += _commands(test if isinstance(test, list) else ["CMD-SHELL", test])
    return found


def _check(command: click.Command, args: list[str], name: str) -> None:
    """``args`` name an existing (sub)command of ``command`` and parse with its options."""
    path = [name]
    while isinstance(command, click.Group):
        assert args, f"{' '.join(path)} needs a subcommand"
        sub = command.commands.get(args[0])
        assert sub is not None, f"{' '.join(path)} has no command {args[0]!r}"
        path.append(args.pop(0))
        command = sub
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for token in args:
        if token.startswith("-"):
            assert token.split("=", 1)[0] in options, f"{' '.join(path)} has no option {token}"
    try:  # values too: types, choices, required options
        command.make_context(" ".join(path), list(args))
    except click.ClickException as err:
        pytest.fail(f"{' '.join(path)} {' '.join(args)}: {err.format_message()}")


@pytest.mark.parametrize(
    ("source", "commands"),
    [("Dockerfile", _dockerfile_commands()), ("docker-compose.yml", _compose_commands())],
)
def test_every_cli_command_exists_with_its_options(source: str, commands: list[list[str]]) -> None:
    checked = 0
    for argv in commands:
        if argv[0] in PROGRAMS:
            _check(PROGRAMS[argv[0]], argv[1:], argv[0])
            checked += 1
        elif argv[0] == "dask":
            assert argv[1] in DASK, f"{source}: dask has no command {argv[1]!r} here"
            _check(DASK[argv[1]], argv[2:], f"dask {argv[1]}")
            checked += 1
    assert checked, f"{source} runs no credit-risk or dask command"


def test_the_image_is_slim_non_root_and_health_checked() -> None:
    instructions = _instructions()
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in {"root", "0"}
    (check,) = [rest for keyword, rest in instructions if keyword == "HEALTHCHECK"]
    assert _argv(check.split(" CMD ", 1)[1])[:2] == ["credit-risk", "health"]
    (default,) = [_argv(rest) for keyword, rest in instructions if keyword == "CMD"]
    assert default[:2] == ["credit-risk", "serve"]
    # What the build copies exists and is not left out of the build context.
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignore}


def test_compose_runs_server_batch_scheduler_and_two_workers_on_one_volume() -> None:
    compose = _compose()
    services = compose["services"]
    assert "data" in compose["volumes"]
    for name in ("server", "batch", "scheduler", "worker-1", "worker-2"):
        assert "data:/data" in services[name]["volumes"], name

    scheduler = services["scheduler"]["command"]
    assert scheduler[:2] == ["dask", "scheduler"]
    address = f"tcp://scheduler:{scheduler[scheduler.index('--port') + 1]}"
    workers = [s for s in services.values() if s["command"][:2] == ["dask", "worker"]]
    assert len(workers) == 2
    assert all(worker["command"][2] == address for worker in workers)
    assert all(worker["environment"]["POLARS_MAX_THREADS"] == "1" for worker in workers)

    batch = services["batch"]
    command = batch["command"]
    assert command[:2] == ["credit-risk", "score-batch"]
    assert command[command.index("--engine") + 1] == "dask"
    assert command[command.index("--scheduler") + 1] == address
    assert command[command.index("--out") + 1].startswith("/data/")  # the workers see it too
    assert command[command.index("--as-of") + 1] == DemoPlan().end_date.isoformat()
    assert batch["restart"] == "no"  # one-shot
    # The server opens the store for writing: it starts once the batch job is done.
    assert services["server"]["command"][:2] == ["credit-risk", "serve"]
    assert services["server"]["depends_on"]["batch"] == {
        "condition": "service_completed_successfully"
    }
    assert "50051:50051" in services["server"]["ports"]
