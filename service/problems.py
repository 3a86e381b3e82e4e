"""What can go wrong with a request, in the service's own terms (no gRPC here).

The domain side raises these; :mod:`service.status` is the one place that turns them into
gRPC status codes and details. Messages are written for the caller: they name the field
and the rule, never echo an identity number and never carry an internal error's text.
"""

from __future__ import annotations

__all__ = [
    "ConsentRequired",
    "InvalidRequest",
    "NotFound",
    "NotReady",
    "PermissionDenied",
    "QuotaExceeded",
    "RequestProblem",
    "ResourceLimit",
    "SubjectNotFound",
    "Unauthenticated",
]


class RequestProblem(Exception):  # noqa: N818 - named for the caller's view, not ours
    """Base of every problem a caller can be told about."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RequestProblem):
    """A field of the request is missing or malformed."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field  # e.g. "subject.uscc"
        self.rule = rule  # a stable machine-readable reason, e.g. "check_character"

    def within(self, path: str) -> InvalidRequest:
        """The same problem, of the item at ``path`` of a request (e.g. ``batches[2]``):
        the field becomes ``batches[2].table`` and the message says where too."""
        joined = "." if self.message.startswith(self.field) else ": "
        return InvalidRequest(f"{path}.{self.field}", self.rule, f"{path}{joined}{self.message}")


class NotFound(RequestProblem):
    """What the request names does not exist."""


class SubjectNotFound(NotFound):
    """The identifier is valid but nothing is on file for it as of the served date."""


class Unauthenticated(RequestProblem):
    """No API key, or one that belongs to no client."""


class PermissionDenied(RequestProblem):
    """The client's role may not call this method."""


class ConsentRequired(RequestProblem):
    """Scoring a natural person needs the subject's authorization reference."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class QuotaExceeded(RequestProblem):
    """The client has used up its quota; it may try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(RequestProblem):
    """The service is starting or draining and cannot answer now."""


class ResourceLimit(RequestProblem):
    """The request is over a fixed limit of the service (message size, stream length)."""


class CallEnded(RequestProblem):
    """The call ended (deadline passed, client cancelled) before its work was done; the
    work was stopped. The client sees its own DEADLINE_EXCEEDED or CANCELLED."""
