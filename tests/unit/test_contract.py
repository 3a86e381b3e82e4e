"""The public gRPC contract (proto/creditrisk/v1): names fixed by DESIGN.md, conventions.

The generated modules come from ``make proto``. The comment check compiles the .proto
sources again with ``--include_source_info`` and reads the leading comments from the
descriptor set's ``SourceCodeInfo``.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator, Mapping
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)
from grpc_tools import protoc

from creditrisk.v1 import audit_pb2, common_pb2, credit_risk_pb2, records_pb2
from records.tables import INQUIRY_PURPOSES, TABLES

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
PROTO_FILES = sorted((PROTO_ROOT / "creditrisk" / "v1").glob("*.proto"))
MODULES = (common_pb2, credit_risk_pb2, records_pb2, audit_pb2)
FILES: tuple[FileDescriptor, ...] = tuple(m.DESCRIPTOR for m in MODULES)

# (service, method) -> (client streaming, server streaming): DESIGN.md's, plus the watchlist
# methods the monitoring issue added.
METHODS = {
    ("CreditRisk", "Score"): (False, False),
    ("CreditRisk", "ScoreStream"): (True, True),
    ("CreditRisk", "GetWarnings"): (False, False),
    ("CreditRisk", "WatchAlerts"): (False, True),
    ("CreditRisk", "GetModelInfo"): (False, False),
    ("CreditRisk", "Watch"): (False, False),
    ("CreditRisk", "Unwatch"): (False, False),
    ("Records", "SubmitRecords"): (True, False),
    ("Audit", "GetDecision"): (False, False),
    ("Audit", "ListDecisions"): (False, True),
    ("Audit", "ReplayDecision"): (False, False),
    ("Audit", "VerifyLog"): (False, False),
    ("Audit", "GetModelReport"): (False, False),
}
TYPES = {
    ("CreditRisk", "Score"): ("ScoreRequest", "ScoreResponse"),
    ("CreditRisk", "ScoreStream"): ("ScoreRequest", "ScoreResponse"),
    ("CreditRisk", "GetWarnings"): ("WarningsRequest", "WarningsResponse"),
    ("CreditRisk", "WatchAlerts"): ("WatchRequest", "Alert"),
    ("CreditRisk", "GetModelInfo"): ("ModelInfoRequest", "ModelInfo"),
    ("CreditRisk", "Watch"): ("WatchlistRequest", "WatchlistResponse"),
    ("CreditRisk", "Unwatch"): ("WatchlistRequest", "WatchlistResponse"),
    ("Records", "SubmitRecords"): ("RecordBatch", "SubmitSummary"),
}


def _services() -> dict[str, ServiceDescriptor]:
    return {name: f.services_by_name[name] for f in FILES for name in f.services_by_name}


def _enums() -> Iterator[EnumDescriptor]:
    def nested(messages: Mapping[str, Descriptor]) -> Iterator[EnumDescriptor]:
        for message in messages.values():
            yield from message.enum_types
            yield from nested(message.nested_types_by_name)

    for f in FILES:
        yield from f.enum_types_by_name.values()
        yield from nested(f.message_types_by_name)


def _names(enum: EnumDescriptor) -> list[str]:
    return [v.name for v in enum.values]


def _upper_snake(name: str) -> str:
    return "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()


def test_package() -> None:
    assert {f.package for f in FILES} == {"creditrisk.v1"}
    assert {Path(f.name).name for f in FILES} == {p.name for p in PROTO_FILES}


def test_services_and_methods_are_designs() -> None:
    services = _services()
    assert set(services) == {"CreditRisk", "Records", "Audit"}
    found = {(s.name, m.name) for s in services.values() for m in s.methods}
    assert found == set(METHODS)
    for (service, method), (client_streaming, server_streaming) in METHODS.items():
        proto = descriptor_pb2.MethodDescriptorProto()
        services[service].methods_by_name[method].CopyToProto(proto)
        assert (proto.client_streaming, proto.server_streaming) == (
            client_streaming,
            server_streaming,
        ), f"{service}.{method}"
    for (service, method), (request, response) in TYPES.items():
        m = services[service].methods_by_name[method]
        assert (m.input_type.name, m.output_type.name) == (request, response)


def test_every_enum_zero_is_unspecified() -> None:
    enums = list(_enums())
    assert len(enums) >= 10
    for enum in enums:
        zero = enum.values_by_number[0]
        assert zero.name == f"{_upper_snake(enum.name)}_UNSPECIFIED", enum.full_name
        prefix = _upper_snake(enum.name) + "_"
        assert all(v.name.startswith(prefix) for v in enum.values), enum.full_name


def test_score_request_fields() -> None:
    fields = credit_risk_pb2.ScoreRequest.DESCRIPTOR.fields_by_name
    assert {"subject", "purpose", "authorization_id", "request_id", "explain"} <= set(fields)
    assert fields["subject"].message_type.name == "Subject"
    assert fields["purpose"].enum_type.name == "Purpose"
    subject = common_pb2.Subject.DESCRIPTOR
    assert [f.name for f in subject.oneofs_by_name["id"].fields] == ["uscc", "resident_id"]
    request = credit_risk_pb2.ScoreRequest(subject=common_pb2.Subject(resident_id="x"))
    assert request.subject.WhichOneof("id") == "resident_id"


def test_score_response_fields() -> None:
    response = credit_risk_pb2.ScoreResponse.DESCRIPTOR.fields_by_name
    assert {
        "decision_id",
        "score",
        "probability_of_default",
        "grade",
        "reasons",
        "warnings",
        "model_version",
        "features_as_of",
        "thin_file",
        "request_id",
        "error",
    } <= set(response)
    assert response["score"].type == response["score"].TYPE_INT32
    assert response["probability_of_default"].type == response["score"].TYPE_DOUBLE
    assert response["grade"].enum_type.name == "Grade"
    assert [v.name for v in response["grade"].enum_type.values][1:] == [
        f"GRADE_{g}" for g in "ABCDE"
    ]
    assert set(common_pb2.Reason.DESCRIPTOR.fields_by_name) >= {
        "code",
        "description",
        "contribution",
    }
    assert set(common_pb2.Warning.DESCRIPTOR.fields_by_name) >= {
        "code",
        "severity",
        "description",
        "since",
        "evidence",
        "via",
    }
    assert response["error"].message_type.name == "ItemError"


def test_item_error_codes_mirror_grpc() -> None:
    codes = common_pb2.StatusCode
    for status in grpc.StatusCode:
        if status is grpc.StatusCode.OK:
            continue
        assert codes.Value(f"STATUS_CODE_{status.name}") == status.value[0]
    assert len(codes.keys()) == len(grpc.StatusCode)  # UNSPECIFIED stands for OK


def test_enums_match_the_records_catalog() -> None:
    tables = [
        n.removeprefix("RECORD_TABLE_").lower() for n in _names(records_pb2.RecordTable.DESCRIPTOR)
    ]
    assert set(tables[1:]) == set(TABLES)
    purposes = [n.removeprefix("PURPOSE_").lower() for n in _names(common_pb2.Purpose.DESCRIPTOR)]
    assert set(purposes[1:]) == set(INQUIRY_PURPOSES)


# -- every element has a comment (from the sources) ---------------------------------------

# Field numbers of descriptor.proto, for SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


@pytest.fixture(scope="module")
def source_files(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[descriptor_pb2.FileDescriptorProto]:
    out = tmp_path_factory.mktemp("contract") / "contract.pb"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *(str(p) for p in PROTO_FILES),
        ]
    )
    assert status == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert len(files) == len(PROTO_FILES)
    return list(files)


def _elements(
    f: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[str, tuple[int, ...]]]:
    def enum(
        e: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]
    ) -> Iterator[tuple[str, tuple[int, ...]]]:
        yield f"enum {name}", path
        for i, v in enumerate(e.value):
            yield f"enum value {v.name}", (*path, _ENUM_VALUE, i)

    def message(
        m: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]
    ) -> Iterator[tuple[str, tuple[int, ...]]]:
        yield f"message {name}", path
        for i, fd in enumerate(m.field):
            yield f"field {name}.{fd.name}", (*path, _MESSAGE_FIELD, i)
        for i, o in enumerate(m.oneof_decl):
            if not o.name.startswith("_"):  # proto3 `optional` makes a synthetic oneof
                yield f"oneof {name}.{o.name}", (*path, _MESSAGE_ONEOF, i)
        for i, n in enumerate(m.nested_type):
            if not n.options.map_entry:
                yield from message(n, f"{name}.{n.name}", (*path, _MESSAGE_NESTED, i))
        for i, e in enumerate(m.enum_type):
            yield from enum(e, f"{name}.{e.name}", (*path, _MESSAGE_ENUM, i))

    for i, m in enumerate(f.message_type):
        yield from message(m, m.name, (_FILE_MESSAGE, i))
    for i, e in enumerate(f.enum_type):
        yield from enum(e, e.name, (_FILE_ENUM, i))
    for i, s in enumerate(f.service):
        yield f"service {s.name}", (_FILE_SERVICE, i)
        for j, method in enumerate(s.method):
            yield f"rpc {s.name}.{method.name}", (_FILE_SERVICE, i, _SERVICE_METHOD, j)


def test_every_element_has_a_comment(
    source_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    missing = []
    checked = 0
    for f in source_files:
        comments = {
            tuple(loc.path): loc.leading_comments.strip() for loc in f.source_code_info.location
        }
        for what, path in _elements(f):
            checked += 1
            if not comments.get(path):
                missing.append(f"{f.name}: {what}")
    assert checked > 200
    assert not missing, "no leading comment on:\n" + "\n".join(missing)


def test_the_comment_check_sees_a_missing_comment(tmp_path: Path) -> None:
    proto = tmp_path / "bare.proto"
    proto.write_text(
        'syntax = "proto3";\npackage t;\n// A message.\nmessage M {\n  string bare = 1;\n}\n'
    )
    out = tmp_path / "bare.pb"
    assert (
        protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{tmp_path}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                str(proto),
            ]
        )
        == 0
    )
    (f,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    comments = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
    found = {what: bool(comments.get(path, "").strip()) for what, path in _elements(f)}
    assert found == {"message M": True, "field M.bare": False}
