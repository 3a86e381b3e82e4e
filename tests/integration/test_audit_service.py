"""The Audit service through a real server: every decision path writes the log before it
answers; the regulator reads, lists, replays and verifies; nobody else may."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ROLES, ServiceData, bearer, rpc_details, service_settings
from google.protobuf import timestamp_pb2

from creditrisk.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    credit_risk_pb2,
    credit_risk_pb2_grpc,
)
from service.server import CreditRiskServer

LOAN = common_pb2.PURPOSE_LOAN_APPROVAL


@pytest.fixture(scope="module")
def stubs(channel: grpc.Channel) -> tuple[Any, Any]:
    return credit_risk_pb2_grpc.CreditRiskStub(channel), audit_pb2_grpc.AuditStub(channel)


def _entities(server: CreditRiskServer) -> list[str]:
    assert server.runtime is not None
    return [k for k in server.runtime.features.subject_keys() if len(k) == 18]


def test_every_decision_path_is_logged_and_readable(
    live_server: CreditRiskServer, service_data: ServiceData, stubs: tuple[Any, Any]
) -> None:
    scoring, audit = stubs
    lender = bearer(service_data.keys["lender"])
    regulator = bearer(service_data.keys["regulator"])
    keys = _entities(live_server)
    scored = scoring.Score(
        credit_risk_pb2.ScoreRequest(
            subject=common_pb2.Subject(uscc=keys[0]),
            purpose=LOAN,
            explain=True,
            request_id="audit-1",
        ),
        metadata=lender,
    )
    streamed = list(
        scoring.ScoreStream(
            iter(
                credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(uscc=k), purpose=LOAN)
                for k in keys[1:4]
            ),
            metadata=lender,
        )
    )
    warned = scoring.GetWarnings(
        credit_risk_pb2.WarningsRequest(subject=common_pb2.Subject(uscc=keys[4]), purpose=LOAN),
        metadata=lender,
    )
    record = audit.GetDecision(
        audit_pb2.GetDecisionRequest(decision_id=scored.decision_id), metadata=regulator
    )
    assert record.channel == audit_pb2.DECISION_CHANNEL_SCORE
    assert (record.score, record.probability_of_default, record.grade) == (
        scored.score,
        scored.probability_of_default,
        scored.grade,
    )
    assert [r.code for r in record.reasons] == [r.code for r in scored.reasons]
    assert [w.code for w in record.warnings] == [w.code for w in scored.warnings]
    assert record.client == "demo-lender" and record.request_id == "audit-1"
    assert record.subject_key == keys[0] and len(record.features) > 100
    assert record.decided_at == scored.decided_at and len(record.hash) == 64
    for answer in streamed:
        found = audit.GetDecision(
            audit_pb2.GetDecisionRequest(decision_id=answer.decision_id), metadata=regulator
        )
        assert found.channel == audit_pb2.DECISION_CHANNEL_SCORE_STREAM
        assert found.score == answer.score
    found = audit.GetDecision(
        audit_pb2.GetDecisionRequest(decision_id=warned.decision_id), metadata=regulator
    )
    assert found.channel == audit_pb2.DECISION_CHANNEL_WARNINGS
    with pytest.raises(grpc.RpcError) as missing:
        audit.GetDecision(
            audit_pb2.GetDecisionRequest(decision_id="01M8BFWFS2AF92V8W87JXZ4FJ5"),
            metadata=regulator,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    replay = audit.ReplayDecision(
        audit_pb2.ReplayDecisionRequest(decision_id=scored.decision_id), metadata=regulator
    )
    assert replay.from_recorded_features.outcome == audit_pb2.REPLAY_OUTCOME_MATCH
    assert replay.from_records_store.outcome == audit_pb2.REPLAY_OUTCOME_MATCH, replay

    listed = list(
        audit.ListDecisions(
            audit_pb2.ListDecisionsRequest(client="demo-lender", grade=scored.grade),
            metadata=regulator,
        )
    )
    assert scored.decision_id in {r.decision_id for r in listed}
    assert all(r.client == "demo-lender" and r.grade == scored.grade for r in listed)
    verified = audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=regulator)
    assert verified.intact and verified.entries_checked >= 5
    report = audit.GetModelReport(audit_pb2.ModelReportRequest(), metadata=regulator)
    assert report.model_version == scored.model_version
    monitoring = json.loads(report.report_json)
    assert monitoring["kind"] == "monitoring" and "oot_auc" in monitoring["model"]["evaluation"]
    assert {"stability", "grade_mix", "fairness"} <= set(monitoring)
    assert monitoring["decisions"]["n"] >= 5


def test_decisions_listed_by_subject_and_bad_identifiers_named(
    live_server: CreditRiskServer, service_data: ServiceData, stubs: tuple[Any, Any]
) -> None:
    scoring, audit = stubs
    lender = bearer(service_data.keys["lender"])
    regulator = bearer(service_data.keys["regulator"])
    uscc = _entities(live_server)[7]
    resident_id = service_data.frames["natural_person"]["resident_id"].sort().to_list()[3]
    entity = scoring.Score(
        credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(uscc=uscc), purpose=LOAN),
        metadata=lender,
    )
    person = scoring.Score(
        credit_risk_pb2.ScoreRequest(
            subject=common_pb2.Subject(resident_id=resident_id),
            purpose=LOAN,
            authorization_id="auth-list-1",
        ),
        metadata=lender,
    )
    for subject, answer in (
        (common_pb2.Subject(uscc=uscc), entity),
        (common_pb2.Subject(resident_id=resident_id), person),
    ):
        listed = list(
            audit.ListDecisions(audit_pb2.ListDecisionsRequest(subject=subject), metadata=regulator)
        )
        assert answer.decision_id in {r.decision_id for r in listed}
        assert len({r.subject_key for r in listed}) == 1
    assert listed[0].subject_key != resident_id  # the pseudonym, never the number

    # A malformed identifier (non-ASCII digits too: it once became INTERNAL) is named.
    for subject, field in (
        (common_pb2.Subject(resident_id="\u00b2" * 18), "subject.resident_id"),
        (common_pb2.Subject(resident_id=resident_id[:-1]), "subject.resident_id"),
        (common_pb2.Subject(uscc="not-a-uscc"), "subject.uscc"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            list(
                audit.ListDecisions(
                    audit_pb2.ListDecisionsRequest(subject=subject), metadata=regulator
                )
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        (violation,) = rpc_details(caught.value)["BadRequest"].field_violations
        assert violation.field == field


def _audit_calls(audit: Any, metadata: Any) -> Iterator[tuple[str, Any]]:
    yield (
        "GetDecision",
        lambda: audit.GetDecision(audit_pb2.GetDecisionRequest(decision_id="x"), metadata=metadata),
    )
    yield (
        "ListDecisions",
        lambda: list(
            audit.ListDecisions(audit_pb2.ListDecisionsRequest(limit=1), metadata=metadata)
        ),
    )
    yield "VerifyLog", lambda: audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=metadata)
    yield (
        "GetModelReport",
        lambda: audit.GetModelReport(audit_pb2.ModelReportRequest(), metadata=metadata),
    )


def test_only_the_regulator_reaches_the_audit_service(
    service_data: ServiceData, stubs: tuple[Any, Any]
) -> None:
    _, audit = stubs
    for role in ROLES:
        for name, call in _audit_calls(audit, bearer(service_data.keys[role])):
            try:
                call()
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
            if role == "regulator":
                assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND), name
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (role, name)
    for name, call in _audit_calls(audit, ()):
        with pytest.raises(grpc.RpcError) as anonymous:
            call()
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


def _calls(server: CreditRiskServer, method: str, code: str) -> int:
    text = urllib.request.urlopen(
        f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5
    ).read()
    found = re.search(
        rf'creditrisk_calls_total\{{code="{code}",method="{method}"\}} (\S+)', text.decode()
    )
    return int(float(found.group(1))) if found else 0


def test_a_scan_of_the_log_nobody_waits_for_stops(
    service_data: ServiceData, tmp_path: Path
) -> None:
    """A whole-log VerifyLog takes minutes on a real log, and a ListDecisions whose filter
    matches nothing scans it all; when the caller's deadline passes the server stops
    (else each retry would add a scan of its own)."""
    data_dir = tmp_path / "data"
    shutil.copytree(service_data.pristine, data_dir)
    server = CreditRiskServer(service_settings(data_dir))
    server.start()
    try:
        server.load_and_serve()
        assert server.runtime is not None
        # Small entries walk at ~200k a second here: 400k take ~2 s, four times the
        # caller's deadline, yet the handler is sure to have started before it.
        moment = datetime(2026, 7, 1, tzinfo=UTC).isoformat()
        for part in range(4):
            server.runtime.decision_log.append_many(
                [{"decision_id": f"FILLER{part}-{n:06d}", "time": moment} for n in range(100_000)]
            )
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            audit = audit_pb2_grpc.AuditStub(channel)
            regulator = bearer(service_data.keys["regulator"])
            after_all = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
            nothing_yet = audit_pb2.ListDecisionsRequest(
                from_time=timestamp_pb2.Timestamp(seconds=after_all)
            )
            for method, call in (
                ("VerifyLog", lambda: audit.VerifyLog(
                    audit_pb2.VerifyLogRequest(), metadata=regulator, timeout=0.5
                )),
                ("ListDecisions", lambda: list(audit.ListDecisions(
                    nothing_yet, metadata=regulator, timeout=0.5
                ))),
            ):  # fmt: skip
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                deadline = time.monotonic() + 30
                while not _calls(server, method, "CANCELLED") and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert _calls(server, method, "CANCELLED") == 1, method
                assert _calls(server, method, "OK") == 0, method  # it did not go on to the end
            # One who waits gets the whole walk.
            verified = audit.VerifyLog(audit_pb2.VerifyLogRequest(), metadata=regulator)
            assert verified.intact and verified.entries_checked >= 400_000
    finally:
        server.stop(1)
