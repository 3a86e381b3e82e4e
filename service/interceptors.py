"""Cross-cutting concerns of every call, as server interceptors (outermost first):

1. :class:`ObservabilityInterceptor` opens the call's :class:`CallInfo` (request id,
   method, start time), and when the call ends writes one JSON log line and the
   Prometheus call counter and latency histogram, by method and status code;
2. :class:`ErrorInterceptor` turns any problem raised further in into the call's status
   (:mod:`service.status` decides which), an unexpected exception into ``INTERNAL``;
3. :class:`AuthInterceptor` authenticates the API key, checks the client's role against
   the method's policy and spends its quota;
4. :class:`DecodeInterceptor` turns a request that does not parse as its message (random
   bytes, invalid UTF-8 in a string field) into ``INVALID_ARGUMENT``: grpc would answer
   ``INTERNAL`` for a request its deserializer cannot read, before any interceptor runs.

Each is a :class:`CallInterceptor` (an ``enter`` and a ``leave`` hook); one grpc
interceptor, :class:`InterceptorChain`, runs them around each method. The server is grpc's
asyncio server (:mod:`service.server`), which awaits ``intercept_service`` on the event
loop for every call, so the chain only wraps the method handler there (once per method);
the work happens in the wrapped behaviour, on the event loop: Score and ScoreStream are
coroutines, and the chain's innermost step (:mod:`service.blocking`) makes every other
method a coroutine that runs it on the thread pool. The call's :class:`CallInfo` lives in
a context variable of the call's task, which goes with a method to its pool thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter, Histogram

from service.clients import Client, ClientRegistry, Role
from service.logs import CallLog
from service.problems import InvalidRequest, PermissionDenied, RequestProblem, Unauthenticated
from service.quotas import QuotaBook
from service.status import failure_of, grpc_status

__all__ = [
    "HANDLER_KINDS",
    "METHOD_POLICIES",
    "AuthInterceptor",
    "CallInfo",
    "CallInterceptor",
    "CallMetrics",
    "DecodeInterceptor",
    "ErrorInterceptor",
    "InterceptorChain",
    "MethodPolicy",
    "ObservabilityInterceptor",
    "current_call",
    "is_coroutine_behaviour",
]

_log = logging.getLogger("creditrisk.errors")
call_log = CallLog()
REQUEST_ID_HEADER = "x-request-id"
# Request ids the server makes up: unique per process start, cheap (no uuid syscall).
_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)
MAX_REQUEST_ID = 128


@dataclass
class CallInfo:
    method: str
    request_id: str
    started: float
    client: Client | None = None
    code: str | None = None  # the status code name, once a problem set it
    # The call's metadata, read once: grpc builds a new copy at each read.
    metadata: tuple[tuple[str, Any], ...] = ()


_CALL: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar("call", default=None)


def current_call() -> CallInfo:
    """The call being served on this thread (set by the observability interceptor)."""
    call = _CALL.get()
    if call is None:
        raise RuntimeError("no call is being served on this thread")
    return call


@dataclass(frozen=True)
class MethodPolicy:
    roles: frozenset[Role]
    per_call_quota: bool  # unary calls spend one unit; streams spend per item themselves


_SCORERS = frozenset({Role.LENDER, Role.AGENCY})
_EVERYONE = frozenset(Role)
METHOD_POLICIES: dict[str, MethodPolicy] = {
    "/creditrisk.v1.CreditRisk/Score": MethodPolicy(_SCORERS, True),
    "/creditrisk.v1.CreditRisk/ScoreStream": MethodPolicy(_SCORERS, False),
    "/creditrisk.v1.CreditRisk/GetWarnings": MethodPolicy(_SCORERS, True),
    "/creditrisk.v1.CreditRisk/WatchAlerts": MethodPolicy(frozenset({Role.LENDER}), True),
    "/creditrisk.v1.CreditRisk/Watch": MethodPolicy(frozenset({Role.LENDER}), True),
    "/creditrisk.v1.CreditRisk/Unwatch": MethodPolicy(frozenset({Role.LENDER}), True),
    "/creditrisk.v1.CreditRisk/GetModelInfo": MethodPolicy(_EVERYONE, True),
    "/creditrisk.v1.Records/SubmitRecords": MethodPolicy(frozenset({Role.REPORTER}), False),
}
_AUDIT_PREFIX = "/creditrisk.v1.Audit/"
_AUDIT_POLICY = MethodPolicy(frozenset({Role.REGULATOR}), True)
_OURS = "/creditrisk.v1."


def policy_of(method: str) -> MethodPolicy | None:
    """The access policy of a method of ours; None for the standard services (health,
    reflection), which answer without a key."""
    if method.startswith(_AUDIT_PREFIX):
        return _AUDIT_POLICY
    policy = METHOD_POLICIES.get(method)
    if policy is None and method.startswith(_OURS):
        return MethodPolicy(frozenset(), True)  # an unknown method of ours: nobody
    return policy


Behaviour = Callable[[Any, Any], Any]
# A method handler's behaviour attribute, how to rebuild such a handler, and whether its
# responses stream (then the wrapper must wrap the iteration, not the call).
HANDLER_KINDS: tuple[tuple[str, Callable[..., Any], bool], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


class _Ending(Exception):  # noqa: N818 - not an error: a status on its way out
    """A status for the outermost interceptor to end the call with."""

    def __init__(self, status: grpc.Status) -> None:
        super().__init__("the call ends with a status")  # never the status' text
        self.status = status


def is_coroutine_behaviour(behaviour: Any) -> bool:
    """Whether a method handler's behaviour runs on the event loop as it is."""
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


class InterceptorChain(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The server's one grpc interceptor: wraps each method's handler, once per method,
    between the :class:`CallInterceptor` hooks of the concerns that apply to it (outermost
    first), after ``adapt`` (the innermost step: :mod:`service.blocking` makes each plain
    method a coroutine). One grpc interceptor rather than one per concern: grpc awaits
    ``intercept_service`` of each on the event loop for every call, and the nested
    wrappers cost as much again (five pass-through interceptors took 10% of a bare
    server's calls per second)."""

    def __init__(
        self,
        interceptors: Sequence[CallInterceptor],
        adapt: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self._interceptors = tuple(interceptors)
        self._adapt = adapt
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method -> (handler, wrapped)

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        cached = self._wrapped.get(details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(details.method, handler)
        self._wrapped[details.method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        if self._adapt is not None:
            handler = self._adapt(method, handler)
        chain = tuple(each for each in self._interceptors if each.applies(method))
        if not chain:
            return handler
        for kind, make, streams_out in HANDLER_KINDS:
            inner = getattr(handler, kind)
            if inner:
                if not is_coroutine_behaviour(inner):
                    raise TypeError(
                        f"{method}: a plain method reached the interceptors; the innermost "
                        "step (service.blocking) makes it a coroutine"
                    )
                deserializer = handler.request_deserializer
                for each in reversed(chain):
                    deserializer = each.deserializer(deserializer)
                wrap = _streaming if streams_out else _unary
                return make(wrap(method, inner, chain), deserializer, handler.response_serializer)
        raise ValueError(f"{method}: a method handler without a behaviour")


def _unary(method: str, inner: Behaviour, chain: tuple[CallInterceptor, ...]) -> Behaviour:
    async def behaviour(request: Any, context: Any) -> Any:
        tokens: list[Any] = []
        try:
            response = await inner(_entered(chain, tokens, method, request, context), context)
        except BaseException as error:
            await _failed(chain, tokens, error, context)
            raise
        _left(chain, tokens)
        return response

    return behaviour


def _streaming(method: str, inner: Behaviour, chain: tuple[CallInterceptor, ...]) -> Behaviour:
    async def behaviour(request: Any, context: Any) -> AsyncIterator[Any]:
        tokens: list[Any] = []
        try:
            async for response in inner(_entered(chain, tokens, method, request, context), context):
                yield response
        except BaseException as error:
            await _failed(chain, tokens, error, context)
            raise
        _left(chain, tokens)

    return behaviour


def _entered(
    chain: tuple[CallInterceptor, ...], tokens: list[Any], method: str, request: Any, context: Any
) -> Any:
    """The request after every hook's ``enter``, outermost first; ``tokens`` gets theirs
    (a hook that raises is not entered: only those before it will leave)."""
    for each in chain:
        request, token = each.enter(method, request, context)
        tokens.append(token)
    return request


def _left(chain: tuple[CallInterceptor, ...], tokens: list[Any]) -> None:
    """Every hook's ``leave`` after a call that succeeded, innermost first."""
    for index in range(len(chain) - 1, -1, -1):
        chain[index].leave(tokens[index], None)


async def _failed(
    chain: tuple[CallInterceptor, ...], tokens: list[Any], error: BaseException, context: Any
) -> None:
    """``error`` ended the call: each interceptor entered sees it, innermost first. One
    that answers a status hands it outwards (the outer ones see a :class:`_Ending`), and
    the status is sent once all have seen it (grpc's abort sends it at once, and the
    client must not have its answer before the call is logged), which raises grpc's abort
    error; with no status, ``error`` goes on to grpc."""
    status: grpc.Status | None = None
    seen = error
    for index in range(len(tokens) - 1, -1, -1):
        given = chain[index].leave(tokens[index], seen)
        if given is not None:
            status = given
            seen = _Ending(given)
    if status is not None:
        await context.abort(status.code, status.details, status.trailing_metadata)


class CallInterceptor:
    """One cross-cutting concern of the calls (see :class:`InterceptorChain`): its
    :meth:`enter` runs before the method and its :meth:`leave` after, on the event loop
    (every behaviour is a coroutine by then)."""

    def applies(self, method: str) -> bool:
        return True

    def deserializer(self, given: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        """The request deserializer of the wrapped handler (by default the same)."""
        return given

    def enter(self, method: str, request: Any, context: Any) -> tuple[Any, Any]:
        """Before the behaviour: the request to pass on, and a token for :meth:`leave`.
        Raising here ends the call (the interceptors outside see the error)."""
        return request, None

    def leave(self, token: Any, error: BaseException | None) -> grpc.Status | None:
        """After the behaviour (``error``: what it raised, or None); a status to end the
        call with instead of ``error``, or None to let it pass."""
        return None


class CallMetrics:
    """The Prometheus series of the service, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.calls = Counter(
            "creditrisk_calls",
            "gRPC calls finished, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "creditrisk_call_seconds",
            "gRPC call latency from the first byte handled to the status, by method and code",
            ["method", "code"],
            buckets=(
                0.0002,
                0.0005,
                0.001,
                0.002,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                30,
                60,
            ),
            registry=self.registry,
        )
        self.stream_items = Counter(
            "creditrisk_stream_items",
            "Items answered inside streams, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )


def _request_id(request: Any, metadata: tuple[tuple[str, Any], ...]) -> str:
    value = getattr(request, "request_id", "") if isinstance(request, Message) else ""
    if not value:
        for key, item in metadata:
            if key == REQUEST_ID_HEADER and isinstance(item, str):
                value = item
                break
    if not value or len(value) > MAX_REQUEST_ID or not value.isprintable():
        value = f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"  # ours, so the caller can quote it
    return str(value)


_ENDED_BY_CLIENT = (GeneratorExit, asyncio.CancelledError)


class ObservabilityInterceptor(CallInterceptor):
    """Outermost: logs and counts the call (the chain then sends a problem's status)."""

    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics
        self._series: dict[tuple[str, str], tuple[Any, Any]] = {}

    def enter(self, method: str, request: Any, context: Any) -> tuple[Any, Any]:
        metadata = tuple(context.invocation_metadata() or ())
        call = CallInfo(method, _request_id(request, metadata), time.perf_counter())
        call.metadata = metadata
        return request, (call, _CALL.set(call), context)

    def leave(self, token: Any, error: BaseException | None) -> grpc.Status | None:
        call, context_token, context = token
        # A stream whose client left is closed by asyncio's finaliser, in another context.
        try:  # noqa: SIM105 - contextlib.suppress costs 0.2 µs a call
            _CALL.reset(context_token)
        except ValueError:
            pass
        elapsed = time.perf_counter() - call.started
        code = call.code
        if code is None:
            if error is None:
                code = "OK"
            elif isinstance(error, _ENDED_BY_CLIENT):
                code = "CANCELLED"
            else:  # a status a method set itself (the health service's NOT_FOUND)
                given = context.code() if isinstance(error, grpc.aio.AbortError) else None
                code = given.name if isinstance(given, grpc.StatusCode) else "UNKNOWN"
        series = self._series.get((call.method, code))
        if series is None:  # label lookups cost more than the update: keep the children
            method = call.method.rsplit("/", 1)[-1]
            series = (
                self.metrics.calls.labels(method, code),
                self.metrics.latency.labels(method, code),
            )
            self._series[(call.method, code)] = series
        series[0].inc()
        series[1].observe(elapsed)
        call_log.write(
            {
                "request_id": call.request_id,
                "client": call.client.name if call.client else None,
                "method": call.method,
                "status": code,
                "latency_ms": round(elapsed * 1000, 3),
            }
        )
        return None


class ErrorInterceptor(CallInterceptor):
    """Any problem raised further in becomes the call's status (an unexpected exception:
    ``INTERNAL``, logged with the request id)."""

    def leave(self, token: Any, error: BaseException | None) -> grpc.Status | None:
        if not isinstance(error, Exception) or isinstance(error, grpc.aio.AbortError | _Ending):
            return None  # success, a client that went away, or a status already set
        call = _CALL.get()
        request_id = call.request_id if call else ""
        failure = failure_of(error)
        if not isinstance(error, RequestProblem):
            _log.error(
                "internal error in %s (request %s)",
                call.method if call else "?",
                request_id,
                exc_info=error,
            )
        if call is not None:
            call.code = failure.code.name
        status: grpc.Status = grpc_status(failure, request_id)
        return status


class AuthInterceptor(CallInterceptor):
    def __init__(self, clients: ClientRegistry, quotas: QuotaBook) -> None:
        self.clients = clients
        self.quotas = quotas

    def applies(self, method: str) -> bool:
        return policy_of(method) is not None

    def authenticate(self, metadata: Iterable[tuple[str, Any]]) -> Client:
        header = None
        for key, value in metadata:
            if key == "authorization":
                header = value
                break
        if not isinstance(header, str) or not header:
            raise Unauthenticated("missing `authorization: Bearer <key>` metadata")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("the authorization metadata must be `Bearer <key>`")
        client = self.clients.authenticate(key.strip())
        if client is None:
            raise Unauthenticated("the API key is not valid (unknown or revoked)")
        return client

    def enter(self, method: str, request: Any, context: Any) -> tuple[Any, Any]:
        policy = policy_of(method)
        assert policy is not None
        call = _CALL.get()
        if call is None:  # the observability interceptor is not outside this one
            client = self.authenticate(context.invocation_metadata() or ())
        else:
            client = call.client = self.authenticate(call.metadata)
        if client.role not in policy.roles:
            allowed = ", ".join(sorted(role.value for role in policy.roles)) or "no role"
            raise PermissionDenied(
                f"role {client.role.value!r} may not call {method.rsplit('/', 1)[-1]} "
                f"(allowed: {allowed})"
            )
        if policy.per_call_quota:
            self.quotas.take(client)
        return request, None


@dataclass(frozen=True)
class MalformedRequest:
    """What a request that does not parse as its message is decoded into."""

    message_type: str


class DecodeInterceptor(CallInterceptor):
    """Innermost of the concerns (only the thread-pool adapter is further in): a request
    that is not a valid message of its type is the caller's problem, ``INVALID_ARGUMENT``
    after authentication like any other bad field."""

    def applies(self, method: str) -> bool:
        return method.startswith(_OURS)

    def deserializer(self, given: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        if given is None:
            return None
        owner = getattr(given, "__self__", None)
        name = getattr(getattr(owner, "DESCRIPTOR", None), "name", "request")

        def lenient(data: bytes) -> Any:
            try:
                return given(data)
            except Exception:  # DecodeError, or anything else the parser raises on bad bytes
                return MalformedRequest(name)

        return lenient

    def enter(self, method: str, request: Any, context: Any) -> tuple[Any, Any]:
        if isinstance(request, MalformedRequest):
            _malformed(request)
        # A client stream (not a message, and not the ABC check first: that costs a call)
        if not isinstance(request, Message) and isinstance(request, AsyncIterator):
            return _decoded(request), None
        return request, None


def _malformed(request: MalformedRequest, index: int | None = None) -> None:
    where = "request" if index is None else f"request[{index}]"
    raise InvalidRequest(
        where, "malformed", f"{where} is not a valid {request.message_type} message"
    )


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    index = 0
    async for request in requests:
        if isinstance(request, MalformedRequest):
            _malformed(request, index)
        yield request
        index += 1
