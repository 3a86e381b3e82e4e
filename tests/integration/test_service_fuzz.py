"""Hostile input on every RPC of a real server (its own copy of the demo store):
hypothesis-generated messages of each request type (oversized strings, long repeated
fields, enum values out of range, nested junk) and raw bytes that are no message at all
(invalid UTF-8 in string fields among them). Whatever arrives, the answer is a documented
status, never UNKNOWN or INTERNAL, and the server keeps serving."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import ServiceData, bearer, service_settings
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditrisk.v1 import audit_pb2, credit_risk_pb2, records_pb2
from service.server import CreditRiskServer

# The codes a client can be given (docs/api.md); DEADLINE_EXCEEDED is this test's own
# deadline on a WatchAlerts stream that stays open.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
SERVICES = (
    (credit_risk_pb2, "CreditRisk", "lender"),
    (records_pb2, "Records", "reporter"),
    (audit_pb2, "Audit", "regulator"),
)
METHODS = [
    (module, service, role, method)
    for module, service, role in SERVICES
    for method in module.DESCRIPTOR.services_by_name[service].methods
]

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    # Proto3 enums are open: any int32 can arrive.
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 40) | st.integers(-(2**31), 2**31 - 1),
}
_TEXT = (
    st.text(max_size=40)
    | st.sampled_from(["", "91330106MA2XXXXX0X", "330106198503150014", "\x00", "A" * 200_000])
    | st.text(alphabet="0123456789X", min_size=18, max_size=18)
)


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _messages(field.message_type, depth + 1)
    if field.type == FieldDescriptor.TYPE_STRING:
        return _TEXT
    return _SCALARS[field.type]


def _messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with any subset of its fields set to junk."""
    cls = _class_of(descriptor)
    if depth > 2 or descriptor.full_name.startswith("google.protobuf"):
        return st.just(cls())
    fields = [
        f
        for f in descriptor.fields
        if not f.message_type or not f.message_type.GetOptions().map_entry
    ]
    maps = [
        f for f in descriptor.fields if f.message_type and f.message_type.GetOptions().map_entry
    ]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for field in draw(st.lists(st.sampled_from(fields), unique=True)) if fields else []:
            if field.is_repeated:
                values = draw(st.lists(_value(field, depth), max_size=3 if depth else 40))
                target = getattr(message, field.name)
                for value in values:
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        target.add().CopyFrom(value)
                    else:
                        target.append(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, field.name).CopyFrom(draw(_value(field, depth)))
            else:
                setattr(message, field.name, draw(_value(field, depth)))
        for field in maps:
            entries = draw(st.dictionaries(_TEXT, _TEXT, max_size=12))
            getattr(message, field.name).update(entries)
        return message

    return build()


def _class_of(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


@pytest.fixture(scope="module")
def fuzz_server(
    service_data: ServiceData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CreditRiskServer, grpc.Channel]]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(service_data.pristine, data_dir)
    server = CreditRiskServer(service_settings(data_dir))
    server.start()
    server.load_and_serve()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[("grpc.max_send_message_length", 8 << 20)],
    )
    yield server, channel
    channel.close()
    server.stop(1)


def _invoke(
    channel: grpc.Channel, path: str, method: Any, payload: bytes, metadata: Any
) -> grpc.StatusCode:
    """Sends ``payload`` as the request bytes (one item for a client stream) and reads
    the whole answer."""
    identity = dict(request_serializer=None, response_deserializer=None)
    try:
        if method.client_streaming and method.server_streaming:
            list(
                channel.stream_stream(path, **identity)(
                    iter([payload]), metadata=metadata, timeout=5
                )
            )
        elif method.client_streaming:
            channel.stream_unary(path, **identity)(iter([payload]), metadata=metadata, timeout=5)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **identity)(
                payload, metadata=metadata, timeout=0.5
            ):
                pass
        else:
            channel.unary_unary(path, **identity)(payload, metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize(
    ("module", "service", "role", "method"),
    METHODS,
    ids=[f"{service}.{method.name}" for _, service, _, method in METHODS],
)
def test_any_message_gets_a_documented_status(
    fuzz_server: tuple[CreditRiskServer, grpc.Channel],
    service_data: ServiceData,
    module: Any,
    service: str,
    role: str,
    method: Any,
) -> None:
    _, channel = fuzz_server
    path = f"/creditrisk.v1.{service}/{method.name}"
    metadata = bearer(service_data.keys[role])
    seen: set[grpc.StatusCode] = set()

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        st.one_of(
            _messages(method.input_type).map(lambda m: m.SerializeToString()),
            st.binary(max_size=200),
            # A string field (1) holding bytes that are not UTF-8.
            st.binary(min_size=1, max_size=20).map(
                lambda b: b"\x0a" + bytes([len(b) + 1]) + b"\xff" + b
            ),
        )
    )
    def check(payload: bytes) -> None:
        code = _invoke(channel, path, method, payload, metadata)
        seen.add(code)
        assert code in DOCUMENTED, f"{path} answered {code} to {payload[:80]!r}"

    check()
    assert seen, "the fuzzer sent something"


def test_the_server_still_serves_after_the_fuzzing(
    fuzz_server: tuple[CreditRiskServer, grpc.Channel],
) -> None:
    _, channel = fuzz_server
    answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_bytes_that_are_no_message_are_invalid_argument_after_authentication(
    fuzz_server: tuple[CreditRiskServer, grpc.Channel], service_data: ServiceData
) -> None:
    _, channel = fuzz_server
    not_utf8 = b"\x0a\x04\x0a\x02\xff\xfe"  # subject.uscc = two bytes that are not UTF-8
    methods = {m.name: m for m in credit_risk_pb2.DESCRIPTOR.services_by_name["CreditRisk"].methods}
    score = "/creditrisk.v1.CreditRisk/Score"
    lender = bearer(service_data.keys["lender"])
    assert _invoke(channel, score, methods["Score"], not_utf8, lender) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert _invoke(channel, score, methods["Score"], not_utf8, ()) is (
        grpc.StatusCode.UNAUTHENTICATED
    )
    stream = "/creditrisk.v1.CreditRisk/ScoreStream"
    assert _invoke(channel, stream, methods["ScoreStream"], not_utf8, lender) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    submit = records_pb2.DESCRIPTOR.services_by_name["Records"].methods_by_name["SubmitRecords"]
    reporter = bearer(service_data.keys["reporter"])
    code = _invoke(channel, "/creditrisk.v1.Records/SubmitRecords", submit, b"\xff\xff", reporter)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
