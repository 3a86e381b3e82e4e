"""The one place where what went wrong becomes a gRPC status.

Every problem (:mod:`service.problems`) maps to a status code, a message for the caller
and standard ``google.rpc`` details: ``BadRequest`` field violations for a bad field,
``RetryInfo`` when over quota, ``ErrorInfo`` with a stable reason, and ``RequestInfo``
with the request id. Anything else is an internal fault: the caller gets ``INTERNAL``
with a fixed message and the request id, never the exception's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from creditrisk.v1 import common_pb2
from service.problems import (
    CallEnded,
    ConsentRequired,
    InvalidRequest,
    NotFound,
    NotReady,
    PermissionDenied,
    QuotaExceeded,
    RequestProblem,
    ResourceLimit,
    SubjectNotFound,
    Unauthenticated,
)

__all__ = [
    "ERROR_DOMAIN",
    "INTERNAL_MESSAGE",
    "Failure",
    "failure_of",
    "grpc_status",
    "item_error",
]

ERROR_DOMAIN = "creditrisk.v1"
INTERNAL_MESSAGE = "internal error; the service logged it under this request id"

_CODES: tuple[tuple[type[RequestProblem], grpc.StatusCode, str], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    (SubjectNotFound, grpc.StatusCode.NOT_FOUND, "SUBJECT_NOT_FOUND"),
    (NotFound, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED"),
    (ConsentRequired, grpc.StatusCode.PERMISSION_DENIED, "CONSENT_REQUIRED"),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED"),
    (ResourceLimit, grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"),
    (NotReady, grpc.StatusCode.UNAVAILABLE, "NOT_READY"),
    (CallEnded, grpc.StatusCode.CANCELLED, "CALL_ENDED"),
)


@dataclass(frozen=True)
class Failure:
    """A problem as the caller sees it."""

    code: grpc.StatusCode
    message: str
    reason: str  # ErrorInfo.reason: stable, machine-readable
    field: str | None = None
    rule: str | None = None
    retry_after: float | None = None


def failure_of(error: BaseException) -> Failure:
    """The caller's view of ``error``; an unexpected exception is an internal fault."""
    if isinstance(error, RequestProblem):
        for kind, code, reason in _CODES:
            if isinstance(error, kind):
                field = getattr(error, "field", None)
                return Failure(
                    code=code,
                    message=error.message,
                    reason=reason,
                    field=field,
                    rule=getattr(error, "rule", None) or ("required" if field else None),
                    retry_after=getattr(error, "retry_after", None),
                )
    return Failure(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "INTERNAL")


def _duration(seconds: float) -> duration_pb2.Duration:
    # From whole nanoseconds, so rounding never yields nanos == 1e9 (an invalid Duration).
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    return duration_pb2.Duration(seconds=whole, nanos=nanos)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def grpc_status(failure: Failure, request_id: str) -> grpc.Status:
    """The status a unary call ends with, details included."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=failure.reason, domain=ERROR_DOMAIN, metadata={"request_id": request_id}
            )
        ),
        _pack(error_details_pb2.RequestInfo(request_id=request_id)),
    ]
    if failure.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=failure.field, description=failure.message, reason=failure.rule or ""
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if failure.retry_after is not None:
        details.append(
            _pack(error_details_pb2.RetryInfo(retry_delay=_duration(failure.retry_after)))
        )
    message = failure.message
    if failure.code is grpc.StatusCode.INTERNAL:
        message = f"{message} ({request_id})"
    status = status_pb2.Status(code=failure.code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


def item_error(failure: Failure, request_id: str) -> common_pb2.ItemError:
    """The same failure as one ScoreStream item's error."""
    message = failure.message
    if failure.code is grpc.StatusCode.INTERNAL:
        message = f"{message} ({request_id})"
    error = common_pb2.ItemError(code=failure.code.value[0], message=message)
    if failure.field is not None:
        error.field_violations.add(
            field=failure.field, description=failure.message, reason=failure.rule or ""
        )
    if failure.retry_after is not None:
        error.retry_delay.CopyFrom(_duration(failure.retry_after))
    return error
