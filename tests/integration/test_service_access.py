"""Who may call what: every method × every role, no key and a bad key; TLS and mutual TLS
with a CA made in the test; hypothesis-generated requests yield only documented codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from conftest import ROLES, ServiceData, bearer, service_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditrisk.v1 import common_pb2, credit_risk_pb2, credit_risk_pb2_grpc, records_pb2_grpc
from service.server import CreditRiskServer

ALLOWED = {
    "Score": {"lender", "agency"},
    "ScoreStream": {"lender", "agency"},
    "GetWarnings": {"lender", "agency"},
    "GetModelInfo": set(ROLES),
    "WatchAlerts": {"lender"},
    "Watch": {"lender"},
    "Unwatch": {"lender"},
    "SubmitRecords": {"reporter"},
}


def _uscc(server: CreditRiskServer) -> str:
    assert server.runtime is not None
    return next(k for k in server.runtime.features.subject_keys() if len(k) == 18)


def _call(stub: Any, method: str, uscc: str, metadata: Any) -> None:
    subject = common_pb2.Subject(uscc=uscc)
    purpose = common_pb2.PURPOSE_LOAN_APPROVAL
    if method == "Score":
        stub.Score(
            credit_risk_pb2.ScoreRequest(subject=subject, purpose=purpose), metadata=metadata
        )
    elif method == "ScoreStream":
        answers = list(
            stub.ScoreStream(
                iter([credit_risk_pb2.ScoreRequest(subject=subject, purpose=purpose)]),
                metadata=metadata,
            )
        )
        assert len(answers) == 1 and not answers[0].HasField("error")
    elif method == "GetWarnings":
        stub.GetWarnings(
            credit_risk_pb2.WarningsRequest(subject=subject, purpose=purpose), metadata=metadata
        )
    elif method == "GetModelInfo":
        stub.GetModelInfo(credit_risk_pb2.ModelInfoRequest(), metadata=metadata)
    elif method in ("Watch", "Unwatch"):
        watched = credit_risk_pb2.WatchedSubject(subject=subject, reference="access-test")
        request = credit_risk_pb2.WatchlistRequest(subjects=[watched])
        getattr(stub, method)(request, metadata=metadata)
    elif method == "SubmitRecords":
        records = records_pb2_grpc.RecordsStub(stub.channel)
        summary = records.SubmitRecords(iter([]), metadata=metadata)
        assert summary.read == 0
    else:
        # No alert is due: an allowed stream stays open until the deadline.
        stream = stub.WatchAlerts(credit_risk_pb2.WatchRequest(), metadata=metadata, timeout=0.5)
        try:
            next(iter(stream))
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
                raise


def _code(action: Callable[[], None]) -> grpc.StatusCode:
    try:
        action()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", sorted(ALLOWED))
def test_access_matrix(
    live_server: CreditRiskServer, channel: grpc.Channel, service_data: ServiceData, method: str
) -> None:
    stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
    stub.channel = channel  # type: ignore[attr-defined]  # for the Records service
    uscc = _uscc(live_server)
    seen = {}
    for role in ROLES:
        seen[role] = _code(lambda r=role: _call(stub, method, uscc, bearer(service_data.keys[r])))
    seen["no key"] = _code(lambda: _call(stub, method, uscc, ()))
    seen["bad key"] = _code(lambda: _call(stub, method, uscc, bearer("crk_" + "x" * 43)))
    seen["not bearer"] = _code(
        lambda: _call(stub, method, uscc, (("authorization", service_data.keys["lender"]),))
    )
    expected = {}
    for role in ROLES:
        if role not in ALLOWED[method]:
            expected[role] = grpc.StatusCode.PERMISSION_DENIED
        else:
            expected[role] = grpc.StatusCode.OK
    for anonymous in ("no key", "bad key", "not bearer"):
        expected[anonymous] = grpc.StatusCode.UNAUTHENTICATED
    assert seen == expected


def test_a_revoked_key_is_refused_within_a_second(
    live_server: CreditRiskServer, channel: grpc.Channel
) -> None:
    import time

    stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
    _, key = live_server.clients.add("short-lived", "lender")
    uscc = _uscc(live_server)
    assert _code(lambda: _call(stub, "Score", uscc, bearer(key))) == grpc.StatusCode.OK
    live_server.clients.revoke("short-lived")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if _code(lambda: _call(stub, "Score", uscc, bearer(key))) != grpc.StatusCode.OK:
            break
        time.sleep(0.1)
    assert _code(lambda: _call(stub, "Score", uscc, bearer(key))) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


# -- hostile requests ---------------------------------------------------------------------------

DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_text = st.text(max_size=40) | st.text(alphabet="0123456789X", min_size=15, max_size=19)
_subjects = st.one_of(
    st.builds(lambda u: common_pb2.Subject(uscc=u), _text),
    st.builds(lambda r: common_pb2.Subject(resident_id=r), _text),
    st.just(common_pb2.Subject()),
)
_requests = st.builds(
    lambda subject, purpose, authorization, request_id, explain: credit_risk_pb2.ScoreRequest(
        subject=subject,
        purpose=purpose,
        authorization_id=authorization,
        request_id=request_id,
        explain=explain,
    ),
    _subjects,
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.text(max_size=200),
    st.text(max_size=200),
    st.booleans(),
)


@pytest.fixture(scope="module")
def fuzz_stub(live_server: CreditRiskServer, channel: grpc.Channel) -> Iterator[Any]:
    _, key = live_server.clients.add("fuzzer", "agency", quota_per_second=1e6)
    yield credit_risk_pb2_grpc.CreditRiskStub(channel), bearer(key)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=_requests)
def test_generated_requests_yield_only_documented_codes(fuzz_stub: Any, request: Any) -> None:
    stub, metadata = fuzz_stub
    code = _code(lambda: stub.Score(request, metadata=metadata))
    assert code in DOCUMENTED
    warnings = credit_risk_pb2.WarningsRequest(
        subject=request.subject,
        purpose=request.purpose,
        authorization_id=request.authorization_id,
        request_id=request.request_id,
        min_severity=request.purpose % 7,
    )
    assert _code(lambda: stub.GetWarnings(warnings, metadata=metadata)) in DOCUMENTED


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=st.lists(_requests, max_size=50))
def test_generated_streams_answer_every_item(fuzz_stub: Any, requests: list[Any]) -> None:
    stub, metadata = fuzz_stub
    answers = list(stub.ScoreStream(iter(requests), metadata=metadata))
    assert sorted(a.stream_index for a in answers) == list(range(len(requests)))
    documented = {c.value[0] for c in DOCUMENTED} - {0}
    for answer in answers:
        assert answer.error.code == 0 or answer.error.code in documented


def test_oversized_message_is_refused(
    live_server: CreditRiskServer, channel: grpc.Channel, fuzz_stub: Any
) -> None:
    stub, metadata = fuzz_stub
    request = credit_risk_pb2.ScoreRequest(
        subject=common_pb2.Subject(uscc="9" * (2 << 20)), purpose=1
    )
    assert _code(lambda: stub.Score(request, metadata=metadata)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )


# -- TLS ----------------------------------------------------------------------------------------


def _tls_server(
    live_server: CreditRiskServer, data: ServiceData, tmp: Path, ca: trustme.CA, *, mutual: bool
) -> CreditRiskServer:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(tmp / "server.key")
    cert.cert_chain_pems[0].write_to_path(tmp / "server.pem")
    tls: dict[str, Any] = {"cert_file": tmp / "server.pem", "key_file": tmp / "server.key"}
    if mutual:
        ca.cert_pem.write_to_path(tmp / "clients-ca.pem")
        tls["client_ca_file"] = tmp / "clients-ca.pem"
    server = CreditRiskServer(service_settings(data.data_dir, tls=tls, metrics_port=None))
    server.start()
    assert live_server.runtime is not None
    server.servicer.attach(live_server.runtime.scorer)  # the session's runtime, not a copy
    return server


def _score_over(port: int, credentials: grpc.ChannelCredentials, uscc: str, key: str) -> Any:
    with grpc.secure_channel(
        f"localhost:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    ) as channel:
        stub = credit_risk_pb2_grpc.CreditRiskStub(channel)
        return _code(lambda: _call(stub, "Score", uscc, bearer(key)))


def test_tls(live_server: CreditRiskServer, service_data: ServiceData, tmp_path: Path) -> None:
    ca = trustme.CA()
    server = _tls_server(live_server, service_data, tmp_path, ca, mutual=False)
    try:
        uscc, key = _uscc(live_server), service_data.keys["lender"]
        trusted = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        assert _score_over(server.port, trusted, uscc, key) == grpc.StatusCode.OK
        stranger = grpc.ssl_channel_credentials(root_certificates=trustme.CA().cert_pem.bytes())
        assert _score_over(server.port, stranger, uscc, key) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as plain:
            stub = credit_risk_pb2_grpc.CreditRiskStub(plain)
            assert _code(lambda: _call(stub, "Score", uscc, bearer(key))) == (
                grpc.StatusCode.UNAVAILABLE
            )
    finally:
        server.stop(0)


def test_mutual_tls(
    live_server: CreditRiskServer, service_data: ServiceData, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = _tls_server(live_server, service_data, tmp_path, ca, mutual=True)
    try:
        uscc, key = _uscc(live_server), service_data.keys["lender"]
        ours = ca.issue_cert("lender.example")
        other_ca = trustme.CA()
        theirs = other_ca.issue_cert("lender.example")

        def with_cert(cert: Any | None) -> grpc.ChannelCredentials:
            return grpc.ssl_channel_credentials(
                root_certificates=ca.cert_pem.bytes(),
                private_key=cert.private_key_pem.bytes() if cert else None,
                certificate_chain=cert.cert_chain_pems[0].bytes() if cert else None,
            )

        assert _score_over(server.port, with_cert(ours), uscc, key) == grpc.StatusCode.OK
        assert _score_over(server.port, with_cert(None), uscc, key) == grpc.StatusCode.UNAVAILABLE
        assert _score_over(server.port, with_cert(theirs), uscc, key) == (
            grpc.StatusCode.UNAVAILABLE
        )
    finally:
        server.stop(0)
