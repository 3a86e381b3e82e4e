"""CreditRisk through a real server on a local port: answers, errors with their details,
consent, idempotency, inquiries, streams, health, reflection, logs and metrics."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import queue
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import ServiceData, bearer, make_uscc, service_settings
from conftest import rpc_details as details
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc
from features.warning_eval import evaluate_warnings
from records.runtime import make_pseudonymiser
from service.codec import ScoreResponseEncoder
from service.logs import configure_logging
from service.scoring import ScoredDecision
from service.server import CreditRiskServer
from service.status import INTERNAL_MESSAGE
from settings import load_settings

LOAN = common_pb2.PURPOSE_LOAN_APPROVAL
MONITORING = common_pb2.PURPOSE_POST_LOAN_MANAGEMENT


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> credit_risk_pb2_grpc.CreditRiskStub:
    return credit_risk_pb2_grpc.CreditRiskStub(channel)


@pytest.fixture(scope="module")
def lender(service_data: ServiceData) -> tuple[tuple[str, str], ...]:
    return bearer(service_data.keys["lender"])


def entity(uscc: str, **fields: Any) -> credit_risk_pb2.ScoreRequest:
    return credit_risk_pb2.ScoreRequest(
        subject=common_pb2.Subject(uscc=uscc), purpose=fields.pop("purpose", LOAN), **fields
    )


def fail(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def entity_keys(server: CreditRiskServer) -> list[str]:
    assert server.runtime is not None
    return [k for k in server.runtime.features.subject_keys() if len(k) == 18]


def person_ids(server: CreditRiskServer, data: ServiceData) -> dict[str, str]:
    """Raw resident id -> pseudonym, of persons the server has decisions for."""
    assert server.runtime is not None
    pseudonymiser = make_pseudonymiser(load_settings(data_dir=data.data_dir))
    out = {}
    for resident_id in data.frames["natural_person"]["resident_id"].to_list():
        key = pseudonymiser.person_key(resident_id)
        if server.runtime.book.lookup(key) is not None:
            out[resident_id] = key
    return out


# -- answers ---------------------------------------------------------------------------------


def test_score_equals_the_model_on_the_served_features(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    for uscc in entity_keys(live_server)[:25]:
        response = stub.Score(entity(uscc, explain=True), metadata=lender)
        vector = runtime.features.lookup(uscc)
        assert vector is not None
        expected = runtime.model.decide(vector.values)
        assert response.probability_of_default == expected.probability_of_default
        assert response.score == expected.score
        assert common_pb2.Grade.Name(response.grade) == f"GRADE_{expected.grade}"
        assert [r.code for r in response.reasons] == [r.code for r in expected.reasons]
        assert response.thin_file == expected.thin_file
        assert response.model_version == runtime.model.version
        assert response.features_as_of == vector.as_of.isoformat()
        assert len(response.decision_id) == 26
        assert response.decided_at.seconds > 0


def test_reasons_only_when_explain(live_server: CreditRiskServer, stub: Any, lender: Any) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    explained = next(
        k
        for k in entity_keys(live_server)
        if (found := runtime.book.lookup(k)) and found.decision.reasons
    )
    assert stub.Score(entity(explained, explain=True), metadata=lender).reasons
    assert not stub.Score(entity(explained, explain=False), metadata=lender).reasons


def test_warnings_are_the_evaluated_flags_with_evidence(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    flags = evaluate_warnings(runtime.store.cursor(), runtime.book.as_of)  # type: ignore[arg-type]
    flagged = flags.filter(flags["subject_key"].str.len_chars() == 18)
    assert flagged.height > 0, "the demo province raises entity flags"
    for uscc in flagged["subject_key"].unique().sort().to_list()[:20]:
        expected = flagged.filter(flagged["subject_key"] == uscc)
        response = stub.Score(entity(uscc), metadata=lender)
        assert sorted(w.code for w in response.warnings) == sorted(expected["code"].to_list())
        ranks = [w.severity for w in response.warnings]
        assert ranks == sorted(ranks, reverse=True), "most severe first"
        for warning in response.warnings:
            assert warning.evidence and warning.since
            assert all(e.record and e.table for e in warning.evidence)
            if warning.code.startswith("W_RP_"):
                assert warning.via.role != common_pb2.RELATED_PARTY_ROLE_UNSPECIFIED
                assert warning.via.pseudonym or warning.via.subject.uscc
        answer = stub.GetWarnings(
            credit_risk_pb2.WarningsRequest(
                subject=common_pb2.Subject(uscc=uscc),
                purpose=LOAN,
                min_severity=common_pb2.SEVERITY_HIGH,
            ),
            metadata=lender,
        )
        assert all(w.severity >= common_pb2.SEVERITY_HIGH for w in answer.warnings)
        assert {w.code for w in answer.warnings} == {
            w.code for w in response.warnings if w.severity >= common_pb2.SEVERITY_HIGH
        }


def test_related_party_flags_name_the_role(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    related = [
        (key, flag)
        for key in entity_keys(live_server)
        if (found := runtime.book.lookup(key))
        for flag in found.warnings
        if flag.via is not None
    ]
    assert related, "the demo province has related-party flags"
    key, flag = related[0]
    response = stub.Score(entity(key), metadata=lender)
    via = next(w.via for w in response.warnings if w.code == flag.code)
    roles = {
        "legal_representative": common_pb2.RELATED_PARTY_ROLE_LEGAL_REPRESENTATIVE,
        "shareholder": common_pb2.RELATED_PARTY_ROLE_MAJOR_SHAREHOLDER,
        "controlled_company": common_pb2.RELATED_PARTY_ROLE_CONTROLLED_COMPANY,
    }
    assert via.role == roles[flag.via.role]


def test_a_person_needs_consent_and_is_scored_with_it(
    live_server: CreditRiskServer, service_data: ServiceData, stub: Any, lender: Any
) -> None:
    resident_id, key = next(iter(person_ids(live_server, service_data).items()))
    request = credit_risk_pb2.ScoreRequest(
        subject=common_pb2.Subject(resident_id=resident_id), purpose=LOAN
    )
    err = fail(stub.Score, request, metadata=lender)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details(err)["ErrorInfo"].reason == "CONSENT_REQUIRED"
    assert details(err)["BadRequest"].field_violations[0].field == "authorization_id"
    assert resident_id not in (err.details() or "")
    request.authorization_id = "consent-2026-0001"
    response = stub.Score(request, metadata=lender)
    assert live_server.runtime is not None
    found = live_server.runtime.book.lookup(key)
    assert found is not None
    assert response.score == found.decision.score


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "field", "rule"),
    [
        (common_pb2.Subject(uscc="91330106MA2ABCDE1X"), "subject.uscc", None),
        (common_pb2.Subject(uscc="91330106"), "subject.uscc", "length"),
        (common_pb2.Subject(resident_id="33010619850315001"), "subject.resident_id", "length"),
        (common_pb2.Subject(), "subject", "required"),
    ],
)
def test_bad_identifiers_are_invalid_argument_naming_field_and_rule(
    stub: Any, lender: Any, subject: Any, field: str, rule: str | None
) -> None:
    request = credit_risk_pb2.ScoreRequest(subject=subject, purpose=LOAN, request_id="bad-1")
    err = fail(stub.Score, request, metadata=lender)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    violation = details(err)["BadRequest"].field_violations[0]
    assert violation.field == field
    assert violation.reason and (rule is None or violation.reason == rule)
    assert details(err)["RequestInfo"].request_id == "bad-1"
    sent = subject.uscc or subject.resident_id
    assert not sent or sent not in (err.details() or ""), "the identifier is never echoed"


def test_missing_and_unknown_purpose(stub: Any, lender: Any) -> None:
    uscc = make_uscc(1)
    for purpose, rule in ((common_pb2.PURPOSE_UNSPECIFIED, "required"), (99, "unknown_value")):
        err = fail(stub.Score, entity(uscc, purpose=purpose), metadata=lender)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        violation = details(err)["BadRequest"].field_violations[0]
        assert (violation.field, violation.reason) == ("purpose", rule)


def test_unknown_subject_is_not_found(stub: Any, lender: Any) -> None:
    err = fail(stub.Score, entity(make_uscc(98_765_432)), metadata=lender)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert details(err)["ErrorInfo"].reason == "SUBJECT_NOT_FOUND"


def test_too_long_request_id(stub: Any, lender: Any) -> None:
    err = fail(stub.Score, entity(make_uscc(1), request_id="r" * 129), metadata=lender)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(err)["BadRequest"].field_violations[0].field == "request_id"


def test_over_quota_is_resource_exhausted_with_retry_info(
    live_server: CreditRiskServer, stub: Any
) -> None:
    _, key = live_server.clients.add("tiny-quota", "lender", quota_per_second=0.5, burst=1)
    uscc = entity_keys(live_server)[0]
    stub.Score(entity(uscc), metadata=bearer(key))
    err = fail(stub.Score, entity(uscc), metadata=bearer(key))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = details(err)["RetryInfo"].retry_delay.ToTimedelta().total_seconds()
    assert 0 < delay <= 2.0


def test_an_internal_fault_is_internal_with_a_fixed_message(
    live_server: CreditRiskServer, stub: Any, lender: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert live_server.runtime is not None

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals: /var/lib/credit/store.duckdb")

    monkeypatch.setattr(live_server.runtime.scorer, "decide", broken)
    err = fail(stub.Score, entity(make_uscc(1), request_id="fault-7"), metadata=lender)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == f"{INTERNAL_MESSAGE} (fault-7)"
    assert "secret" not in repr(details(err))


# -- idempotency ---------------------------------------------------------------------------------


def test_the_same_request_id_returns_the_same_decision(
    live_server: CreditRiskServer, stub: Any, lender: Any, service_data: ServiceData
) -> None:
    uscc = entity_keys(live_server)[3]
    first = stub.Score(entity(uscc, request_id="idem-1"), metadata=lender)
    again = stub.Score(entity(uscc, request_id="idem-1"), metadata=lender)
    assert again.decision_id == first.decision_id and again.decided_at == first.decided_at
    assert again.replayed_idempotent and not first.replayed_idempotent
    other_client = stub.Score(
        entity(uscc, request_id="idem-1"), metadata=bearer(service_data.keys["agency"])
    )
    assert other_client.decision_id != first.decision_id, "idempotency is per client"
    fresh = stub.Score(entity(uscc, request_id="idem-2"), metadata=lender)
    assert fresh.decision_id != first.decision_id
    err = fail(
        stub.Score, entity(entity_keys(live_server)[4], request_id="idem-1"), metadata=lender
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(err)["BadRequest"].field_violations[0].reason == "reused"


def test_answers_wait_for_the_log_without_holding_up_the_server(
    live_server: CreditRiskServer,
    stub: Any,
    lender: Any,
    channel: grpc.Channel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the decision log's fsync hangs, Score answers nothing (not even a retry of a
    request whose decision is stored), and the server still answers what needs no log."""
    gate = threading.Event()
    entered = threading.Event()
    real_fsync = os.fsync

    def held_fsync(fd: int) -> None:
        entered.set()
        gate.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", held_fsync)
    try:
        uscc = entity_keys(live_server)[6]
        first = stub.Score.future(entity(uscc, request_id="held-1"), metadata=lender)
        assert entered.wait(10)
        retry = stub.Score.future(entity(uscc, request_id="held-1"), metadata=lender)
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(3):  # the event loop is free: it answers while both wait
            answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        info = stub.GetModelInfo(credit_risk_pb2.ModelInfoRequest(), metadata=lender, timeout=5)
        assert info.version
        assert not first.done() and not retry.done()
    finally:
        gate.set()
    assert retry.result(timeout=10).decision_id == first.result(timeout=10).decision_id
    assert retry.result().replayed_idempotent and not first.result().replayed_idempotent


# -- inquiries -----------------------------------------------------------------------------------


def test_scoring_is_recorded_as_an_inquiry_except_monitoring(
    live_server: CreditRiskServer, stub: Any, service_data: ServiceData
) -> None:
    runtime = live_server.runtime
    assert runtime is not None and runtime.inquiries is not None
    agency = bearer(service_data.keys["agency"])
    uscc = entity_keys(live_server)[5]
    loan = stub.Score(entity(uscc, purpose=LOAN), metadata=agency)
    watch = stub.Score(entity(uscc, purpose=MONITORING), metadata=agency)
    runtime.inquiries.flush()
    with runtime.store.cursor() as cursor:
        rows = cursor.query(
            "SELECT inquiry_id, purpose, source, subject_key FROM credit_inquiry "
            "WHERE inquiry_id IN (?, ?)",
            [loan.decision_id, watch.decision_id],
        )
    assert rows == [(loan.decision_id, "loan_approval", "DEMO-AGENCY", uscc)]


# -- streams -------------------------------------------------------------------------------------


def test_score_stream_answers_every_item_and_survives_bad_ones(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    keys = entity_keys(live_server)
    total = 3_000

    def requests() -> Iterator[credit_risk_pb2.ScoreRequest]:
        for i in range(total):
            if i % 7 == 3:
                yield entity("NOT-A-USCC", request_id=f"s-{i}")
            elif i % 11 == 5:
                yield entity(make_uscc(90_000_000 + i), request_id=f"s-{i}")
            else:
                yield entity(keys[i % len(keys)], request_id=f"s-{i}", purpose=MONITORING)

    answers = list(stub.ScoreStream(requests(), metadata=lender))
    assert len(answers) == total
    assert sorted(a.stream_index for a in answers) == list(range(total))
    for answer in answers:
        i = answer.stream_index
        assert answer.request_id == f"s-{i}"
        if i % 7 == 3:
            assert answer.error.code == common_pb2.STATUS_CODE_INVALID_ARGUMENT
            assert answer.error.field_violations[0].field == "subject.uscc"
            assert not answer.decision_id
        elif i % 11 == 5:
            assert answer.error.code == common_pb2.STATUS_CODE_NOT_FOUND
        else:
            assert answer.error.code == common_pb2.STATUS_CODE_UNSPECIFIED
            assert answer.decision_id and answer.score > 0


def test_score_stream_answers_a_client_that_waits_for_each_answer_and_one_that_leaves(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    """A client that sends its next request only after the answer to the last is answered
    item by item (the server does not wait for more requests first); a client that
    cancels its stream midway leaves the server serving, the call counted as CANCELLED."""
    keys = entity_keys(live_server)
    answered: queue.Queue[int] = queue.Queue()

    def one_at_a_time() -> Iterator[credit_risk_pb2.ScoreRequest]:
        for i in range(20):
            if i:
                assert answered.get(timeout=10) == i - 1, "no answer before the next request"
            yield entity(keys[i], request_id=f"pp-{i}", purpose=MONITORING)

    for answer in stub.ScoreStream(one_at_a_time(), metadata=lender, timeout=60):
        assert answer.decision_id and answer.request_id == f"pp-{answer.stream_index}"
        answered.put(answer.stream_index)
    assert answered.qsize() == 1 and answered.get() == 19

    def metric(code: str) -> float:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{live_server.metrics_port}/metrics", timeout=5
        ).read()
        found = re.search(
            rf'creditrisk_calls_total\{{code="{code}",method="ScoreStream"\}} (\S+)',
            text.decode(),
        )
        return float(found.group(1)) if found else 0.0

    cancelled_before = metric("CANCELLED")

    def endless() -> Iterator[credit_risk_pb2.ScoreRequest]:
        i = 0
        while True:
            yield entity(keys[i % len(keys)], purpose=MONITORING)
            i += 1

    call = stub.ScoreStream(endless(), metadata=lender)
    assert next(call).decision_id
    call.cancel()
    deadline = time.monotonic() + 10
    while metric("CANCELLED") == cancelled_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric("CANCELLED") == cancelled_before + 1
    assert stub.Score(entity(keys[0]), metadata=lender).decision_id  # still serving


def test_stream_length_limit(live_server: CreditRiskServer, service_data: ServiceData) -> None:
    server = CreditRiskServer(service_settings(service_data.data_dir, max_stream_items=5))
    server.start()
    assert live_server.runtime is not None
    # Answer from the session server's runtime (attached to the servicer only, so stopping
    # this server leaves it open): a second load of the same store would be wasted time.
    server.servicer.attach(live_server.runtime.scorer)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            stream = stub.ScoreStream(
                iter([entity(entity_keys(live_server)[0])] * 10),
                metadata=bearer(service_data.keys["lender"]),
            )
            answers = []
            with pytest.raises(grpc.RpcError) as caught:
                for answer in stream:
                    answers.append(answer)
            assert len(answers) == 5
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(0)


# -- health, reflection, model info ------------------------------------------------------------


def test_health_is_serving_and_reflection_lists_the_services(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "creditrisk.v1.CreditRisk"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    reply = next(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {s.name for s in reply.list_services_response.service}
    assert {"creditrisk.v1.CreditRisk", "grpc.health.v1.Health"} <= names


def test_health_is_not_serving_until_loaded(service_data: ServiceData) -> None:
    server = CreditRiskServer(service_settings(service_data.data_dir))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = health.Check(health_pb2.HealthCheckRequest(service=""))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
            stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
            err = fail(
                stub.Score, entity(make_uscc(1)), metadata=bearer(service_data.keys["lender"])
            )
            assert err.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(0)


def test_model_info(live_server: CreditRiskServer, stub: Any, service_data: ServiceData) -> None:
    info = stub.GetModelInfo(
        credit_risk_pb2.ModelInfoRequest(), metadata=bearer(service_data.keys["regulator"])
    )
    runtime = live_server.runtime
    assert runtime is not None
    assert info.version == runtime.model.version and info.current
    assert list(info.features) == list(runtime.model.feature_names)
    assert [b.grade for b in info.grade_bands] == [1, 2, 3, 4, 5]
    assert info.grade_bands[0].pd_from == 0 and info.grade_bands[-1].pd_to == 1
    assert info.score_scale.min_score == 300 and info.score_scale.max_score == 900
    assert 0.5 < info.metrics["oot_auc"] <= 1
    err = fail(
        stub.GetModelInfo,
        credit_risk_pb2.ModelInfoRequest(version="19990101T000000Z-deadbeef"),
        metadata=bearer(service_data.keys["regulator"]),
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


# -- logs and metrics ------------------------------------------------------------------------


def test_one_json_log_line_per_call_without_identity_numbers(
    live_server: CreditRiskServer, service_data: ServiceData, stub: Any, lender: Any
) -> None:
    sink = io.StringIO()
    handler = configure_logging("INFO", sink)
    try:
        resident_id = next(iter(person_ids(live_server, service_data)))
        stub.Score(
            credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(resident_id=resident_id),
                purpose=LOAN,
                authorization_id="consent-9",
                request_id="log-1",
            ),
            metadata=lender,
        )
        fail(
            stub.Score,
            credit_risk_pb2.ScoreRequest(
                subject=common_pb2.Subject(resident_id=resident_id),
                purpose=LOAN,
                request_id="log-2",
            ),
            metadata=lender,
        )
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()  # writes what the background writer has not yet
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    calls = {line["request_id"]: line for line in lines if line.get("logger") == "creditrisk.calls"}
    assert calls["log-1"]["status"] == "OK" and calls["log-2"]["status"] == "PERMISSION_DENIED"
    for line in calls.values():
        assert line["client"] == "demo-lender"
        assert line["method"] == "/creditrisk.v1.CreditRisk/Score"
        assert line["latency_ms"] >= 0
    assert resident_id not in sink.getvalue()


def test_prometheus_metrics_by_method_and_code(
    live_server: CreditRiskServer, stub: Any, lender: Any, channel: grpc.Channel
) -> None:
    fail(stub.Score, entity("bad"), metadata=lender)
    stub.Score(entity(entity_keys(live_server)[0]), metadata=lender)
    # A status a service sets itself is counted under its code, not UNKNOWN.
    health = health_pb2_grpc.HealthStub(channel)
    err = fail(health.Check, health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    # grpc sends a status the service aborts with itself at once, before the outermost
    # interceptor counts the call: the count may come a moment after the client's answer.
    counted = 'creditrisk_calls_total{code="NOT_FOUND",method="Check"}'
    deadline = time.monotonic() + 5
    while True:
        text = (
            urllib.request.urlopen(
                f"http://127.0.0.1:{live_server.metrics_port}/metrics", timeout=5
            )
            .read()
            .decode()
        )
        if counted in text or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert 'creditrisk_calls_total{code="OK",method="Score"}' in text
    assert 'creditrisk_calls_total{code="INVALID_ARGUMENT",method="Score"}' in text
    assert counted in text
    assert 'creditrisk_call_seconds_bucket{code="OK",le="0.001",method="Score"}' in text


def test_decided_vectors_are_read_only(live_server: CreditRiskServer) -> None:
    assert live_server.runtime is not None
    found = live_server.runtime.book.lookup(entity_keys(live_server)[0])
    assert found is not None
    with pytest.raises(ValueError):
        found.features[0] = np.nan


def test_answer_parts_are_made_in_idle_time_for_every_decision(
    live_server: CreditRiskServer, stub: Any, lender: Any
) -> None:
    runtime = live_server.runtime
    assert runtime is not None
    given: list[str] = []

    def record(decisions: list[Any]) -> int:
        given.extend(found.subject_key for found in decisions)
        return len(decisions)

    runtime.refresher.add_preparer(record)
    deadline = time.monotonic() + 120
    while not runtime.refresher.caught_up() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.refresher.caught_up()
    assert sorted(given) == sorted(found.subject_key for found in runtime.book.decisions())
    assert len(given) == len(runtime.book) > 0
    # Then the decisions are out of the cyclic collector's sight (no 0.3 s pauses).
    assert gc.get_freeze_count() > 0
    # The parts made ahead are the ones a request would make: the answer is the same.
    key = entity_keys(live_server)[0]
    found = runtime.book.lookup(key)
    assert found is not None
    answer = stub.Score(entity(key), metadata=lender)
    fresh = ScoreResponseEncoder().encode(
        ScoredDecision(
            decision_id=answer.decision_id,
            decided_at=answer.decided_at.ToDatetime(tzinfo=UTC),
            subject=found,
            client="demo-lender",
            purpose="post_loan_management",
            authorization_id="",
            request_id=answer.request_id,
            warning_rules_version=runtime.book.warning_rules_version,
        ),
        explain=False,
    )
    assert answer == credit_risk_pb2.ScoreResponse.FromString(fresh)


def test_reasons_computed_behind_equal_reasons_computed_per_row(
    live_server: CreditRiskServer,
) -> None:
    import time

    runtime = live_server.runtime
    assert runtime is not None
    deadline = time.monotonic() + 120
    while runtime.book.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runtime.book.pending() == 0, "the background explains every decision"
    checked = 0
    for key in runtime.features.subject_keys()[:200]:
        found = runtime.book.lookup(key)
        assert found is not None and found.explained
        expected = runtime.model.decide(found.features)
        assert found.decision.reasons == expected.reasons
        checked += bool(expected.reasons)
    assert checked > 50
