"""The Python client example of docs/api.md runs against a real server as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from conftest import ServiceData

from service.server import CreditRiskServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_documented_client_runs(
    live_server: CreditRiskServer, service_data: ServiceData
) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A Python client") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "docs/api.md has a Python client example"
    assert live_server.runtime is not None
    uscc = next(k for k in live_server.runtime.features.subject_keys() if len(k) == 18)
    source = (
        code.group(1)
        .replace("127.0.0.1:50051", f"127.0.0.1:{live_server.port}")
        .replace("<your key>", service_data.keys["lender"])
        .replace("91330106MA2XXXXXXX", uscc)
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, str(DOC), "exec"), {})
    lines = out.getvalue().splitlines()
    assert re.match(r"\d{3} GRADE_[A-E] [0-9A-Z]{26}$", lines[0]), lines
    assert any(
        line.startswith("batch-7/1 STATUS_CODE_INVALID_ARGUMENT ['subject.uscc']") for line in lines
    ), lines
    assert any(re.match(r"batch-7/0 \d{3}$", line) for line in lines), lines
