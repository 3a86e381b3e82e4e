"""service.status: every problem becomes its documented gRPC status and details."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from creditrisk.v1 import common_pb2
from service.problems import (
    ConsentRequired,
    InvalidRequest,
    NotFound,
    NotReady,
    PermissionDenied,
    QuotaExceeded,
    ResourceLimit,
    SubjectNotFound,
    Unauthenticated,
)
from service.status import ERROR_DOMAIN, INTERNAL_MESSAGE, failure_of, grpc_status, item_error

REQUEST_ID = "req-7f3a"

PROBLEMS: list[tuple[Exception, grpc.StatusCode, str]] = [
    (
        InvalidRequest("subject.uscc", "check_character", "subject.uscc: bad check character"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    ),
    (SubjectNotFound("no records on file"), grpc.StatusCode.NOT_FOUND, "SUBJECT_NOT_FOUND"),
    (NotFound("no such decision"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    (Unauthenticated("no API key"), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
    (
        PermissionDenied("role reporter may not score"),
        grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_NOT_ALLOWED",
    ),
    (
        ConsentRequired("authorization_id", "consent needed"),
        grpc.StatusCode.PERMISSION_DENIED,
        "CONSENT_REQUIRED",
    ),
    (
        QuotaExceeded("over quota", retry_after=1.25),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "QUOTA_EXCEEDED",
    ),
    (ResourceLimit("stream too long"), grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"),
    (NotReady("loading"), grpc.StatusCode.UNAVAILABLE, "NOT_READY"),
]
IDS = [type(problem).__name__ for problem, _, _ in PROBLEMS]


def rpc_status_of(status: grpc.Status) -> status_pb2.Status:
    metadata = dict(status.trailing_metadata)
    return status_pb2.Status.FromString(metadata["grpc-status-details-bin"])


def unpack(details: list[any_pb2.Any], kind: type) -> list:  # type: ignore[type-arg]
    found = []
    for packed in details:
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            found.append(message)
    return found


def only(details: list[any_pb2.Any], kind: type) -> object:
    found = unpack(details, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, got {len(found)}"
    return found[0]


@pytest.mark.parametrize(("problem", "code", "reason"), PROBLEMS, ids=IDS)
def test_problem_maps_to_its_code_and_reason(
    problem: Exception, code: grpc.StatusCode, reason: str
) -> None:
    failure = failure_of(problem)
    assert failure.code is code
    assert failure.reason == reason
    assert failure.message == str(problem)


@pytest.mark.parametrize(("problem", "code", "reason"), PROBLEMS, ids=IDS)
def test_grpc_status_carries_code_message_error_info_and_request_info(
    problem: Exception, code: grpc.StatusCode, reason: str
) -> None:
    status = grpc_status(failure_of(problem), REQUEST_ID)
    assert status.code is code
    assert status.details == str(problem)
    rich = rpc_status_of(status)
    assert rich.code == code.value[0]
    assert rich.message == str(problem)
    info = only(list(rich.details), error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == reason
    assert info.domain == ERROR_DOMAIN == "creditrisk.v1"
    request = only(list(rich.details), error_details_pb2.RequestInfo)
    assert isinstance(request, error_details_pb2.RequestInfo)
    assert request.request_id == REQUEST_ID


@pytest.mark.parametrize(("problem", "code", "reason"), PROBLEMS, ids=IDS)
def test_item_error_has_the_same_code_number(
    problem: Exception, code: grpc.StatusCode, reason: str
) -> None:
    error = item_error(failure_of(problem), REQUEST_ID)
    assert isinstance(error, common_pb2.ItemError)
    assert error.code == code.value[0]
    assert error.message == str(problem)


def test_proto_status_code_numbers_equal_grpc_numbers() -> None:
    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:  # the proto enum has STATUS_CODE_UNSPECIFIED = 0
            continue
        assert common_pb2.StatusCode.Value(f"STATUS_CODE_{code.name}") == code.value[0]


def test_invalid_request_has_a_field_violation_naming_field_and_rule() -> None:
    problem = InvalidRequest("subject.uscc", "check_character", "subject.uscc: bad check")
    rich = rpc_status_of(grpc_status(failure_of(problem), REQUEST_ID))
    bad = only(list(rich.details), error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    [violation] = bad.field_violations
    assert violation.field == "subject.uscc"
    assert violation.reason == "check_character"
    assert violation.description == "subject.uscc: bad check"

    error = item_error(failure_of(problem), REQUEST_ID)
    [item_violation] = error.field_violations
    assert (item_violation.field, item_violation.reason) == ("subject.uscc", "check_character")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("subject.uscc: bad check", "subjects[3].subject.uscc: bad check"),
        ("no such table", "subjects[3]: no such table"),
    ],
)
def test_an_items_problem_names_the_item_in_field_and_message(message: str, expected: str) -> None:
    problem = InvalidRequest("subject.uscc", "check_character", message).within("subjects[3]")
    assert (problem.field, problem.rule) == ("subjects[3].subject.uscc", "check_character")
    assert problem.message == expected


def test_consent_required_names_the_authorization_id_field() -> None:
    failure = failure_of(ConsentRequired("authorization_id", "consent needed"))
    rich = rpc_status_of(grpc_status(failure, REQUEST_ID))
    bad = only(list(rich.details), error_details_pb2.BadRequest)
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["authorization_id"]
    error = item_error(failure, REQUEST_ID)
    assert [v.field for v in error.field_violations] == ["authorization_id"]


@pytest.mark.parametrize(
    "problem",
    [SubjectNotFound("x"), Unauthenticated("x"), PermissionDenied("x"), NotReady("x")],
    ids=lambda p: type(p).__name__,
)
def test_problems_without_a_field_have_no_bad_request(problem: Exception) -> None:
    rich = rpc_status_of(grpc_status(failure_of(problem), REQUEST_ID))
    assert unpack(list(rich.details), error_details_pb2.BadRequest) == []
    assert unpack(list(rich.details), error_details_pb2.RetryInfo) == []
    assert not item_error(failure_of(problem), REQUEST_ID).field_violations


@pytest.mark.parametrize("retry_after", [0.5, 1.25, 2.0, 0.001, 30.0])
def test_quota_exceeded_has_retry_info_equal_to_retry_after(retry_after: float) -> None:
    failure = failure_of(QuotaExceeded("over quota", retry_after=retry_after))
    rich = rpc_status_of(grpc_status(failure, REQUEST_ID))
    retry = only(list(rich.details), error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToTimedelta().total_seconds() == pytest.approx(retry_after)
    error = item_error(failure, REQUEST_ID)
    assert error.HasField("retry_delay")
    assert error.retry_delay.ToTimedelta().total_seconds() == pytest.approx(retry_after)


@pytest.mark.parametrize("retry_after", [0.9999999999, 2.9999999996])
def test_retry_delay_is_a_valid_duration_just_below_a_whole_second(retry_after: float) -> None:
    failure = failure_of(QuotaExceeded("over quota", retry_after=retry_after))
    rich = rpc_status_of(grpc_status(failure, REQUEST_ID))
    retry = only(list(rich.details), error_details_pb2.RetryInfo)
    assert isinstance(retry, error_details_pb2.RetryInfo)
    error = item_error(failure, REQUEST_ID)
    for delay in (retry.retry_delay, error.retry_delay):
        assert 0 <= delay.nanos <= 999_999_999
        delay.ToJsonString()  # raises ValueError on an out-of-range Duration
        assert delay.seconds + delay.nanos / 1e9 == pytest.approx(retry_after, abs=1e-9)


SECRET_TEXT = "secret internals /etc/passwd"


def test_an_unexpected_exception_is_internal_without_its_text() -> None:
    failure = failure_of(RuntimeError(SECRET_TEXT))
    assert failure.code is grpc.StatusCode.INTERNAL
    assert failure.field is None and failure.retry_after is None

    status = grpc_status(failure, REQUEST_ID)
    assert status.code is grpc.StatusCode.INTERNAL
    assert status.details == f"{INTERNAL_MESSAGE} ({REQUEST_ID})"
    rich = rpc_status_of(status)
    assert rich.code == grpc.StatusCode.INTERNAL.value[0]
    assert SECRET_TEXT not in rich.SerializeToString().decode("utf-8", "replace")
    assert "passwd" not in status.details and "secret" not in status.details
    info = only(list(rich.details), error_details_pb2.ErrorInfo)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.domain == "creditrisk.v1"
    request = only(list(rich.details), error_details_pb2.RequestInfo)
    assert isinstance(request, error_details_pb2.RequestInfo)
    assert request.request_id == REQUEST_ID

    error = item_error(failure, REQUEST_ID)
    assert error.code == grpc.StatusCode.INTERNAL.value[0]
    assert error.message == f"{INTERNAL_MESSAGE} ({REQUEST_ID})"
    assert "passwd" not in error.SerializeToString().decode("utf-8", "replace")


@pytest.mark.parametrize(
    "error", [KeyError("/etc/passwd"), ValueError(SECRET_TEXT), MemoryError(), Exception()]
)
def test_any_non_problem_exception_is_internal(error: BaseException) -> None:
    assert failure_of(error).code is grpc.StatusCode.INTERNAL
    assert failure_of(error).message == INTERNAL_MESSAGE


def test_a_problems_message_is_not_suffixed_with_the_request_id() -> None:
    status = grpc_status(failure_of(NotReady("loading")), REQUEST_ID)
    assert status.details == "loading"
