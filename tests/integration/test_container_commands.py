"""The commands the containers run beside the usual ones: ``credit-risk health`` (the
health check, against a real server) and ``credit-risk demo-data`` (the one-shot that
prepares the data volume)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from click.testing import CliRunner
from conftest import ServiceData

from service.cli import main
from service.clients import ClientRegistry
from service.server import CreditRiskServer
from settings import load_settings


def test_health_is_serving_on_a_loaded_server(live_server: CreditRiskServer) -> None:
    result = CliRunner().invoke(main, ["health", "--target", f"127.0.0.1:{live_server.port}"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "SERVING"
    result = CliRunner().invoke(
        main,
        ["health", "--target", f"127.0.0.1:{live_server.port}", "--service", "no.such.Service"],
    )
    assert (result.exit_code, result.output.strip()) == (1, "NOT_FOUND")


def test_health_fails_when_nothing_listens() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        main, ["health", "--target", f"127.0.0.1:{port}", "--timeout", "0.5"]
    )
    assert result.exit_code == 1
    assert result.output.strip() in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def test_demo_data_on_a_prepared_directory_only_issues_fresh_keys(
    service_data: ServiceData, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(service_data.pristine, data)
    before = {p.name: p.stat().st_mtime_ns for p in (data / "models").iterdir()}
    result = CliRunner().invoke(main, ["demo-data", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    keys = dict(
        line.removeprefix("demo key ").split(": ", 1)
        for line in result.stdout.splitlines()
        if line.startswith("demo key ")
    )
    assert set(keys) >= {"demo-lender", "demo-agency", "demo-regulator"}
    assert "ready: keys;" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("sample uscc: ")
    assert {p.name: p.stat().st_mtime_ns for p in (data / "models").iterdir()} == before
    registry = ClientRegistry(load_settings(data_dir=data).clients_path)
    assert registry.authenticate(keys["demo-lender"]) is not None
