"""``credit-risk health``: the container health check, against a real server."""

from __future__ import annotations

import socket

from click.testing import CliRunner

from service.cli import main
from service.server import CreditRiskServer


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
