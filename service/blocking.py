"""Plain (blocking) servicer methods on the asyncio server.

Score and ScoreStream are coroutines; every other method of ours is a plain function (or
generator) that reads the store, scans the decision log or waits for alerts. grpc's
asyncio server can run such a method on a thread pool by itself, but the method could not
learn that its call had ended: the done-callbacks of its context only run once it
returns, so a scan of the whole log would go on for a caller whose deadline had passed,
and an alert stream would hold its thread after the client left. So the innermost step of
the interceptor chain turns each plain method into a coroutine that runs it on the pool with a
context that knows when the call ended (``is_active``, ``add_callback``), and carries the
call's context variables (the interceptors' :class:`service.interceptors.CallInfo`) to
the thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from service.interceptors import HANDLER_KINDS, is_coroutine_behaviour

__all__ = ["BlockingCallContext", "BlockingMethods"]

_DONE = object()


class BlockingCallContext:
    """What a plain method sees of its call: the part of ``grpc.ServicerContext`` that
    our servicers use."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def time_remaining(self) -> float | None:
        remaining: float | None = self._context.time_remaining()
        return remaining

    def peer(self) -> str:
        return str(self._context.peer())

    def is_active(self) -> bool:
        """False once the call ended: answered, cancelled, or past its deadline."""
        return not self._ended.is_set()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Call ``callback()`` when the call ends (at once if it has)."""
        with self._lock:
            if not self._ended.is_set():
                self._callbacks.append(callback)
                return True
        callback()
        return True

    def end(self) -> None:
        with self._lock:
            self._ended.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def _in_thread_requests(
    requests: AsyncIterator[Any], loop: asyncio.AbstractEventLoop
) -> Iterator[Any]:
    """A client stream, read from a pool thread: each message is awaited on the loop."""

    async def following() -> Any:
        try:
            return await requests.__anext__()
        except StopAsyncIteration:
            return _DONE

    while True:
        item = asyncio.run_coroutine_threadsafe(following(), loop).result()
        if item is _DONE:
            return
        yield item


class BlockingMethods:
    """The interceptor chain's innermost step: runs each plain method on ``pool`` (see
    the module docstring)."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool

    def adapt(self, method: str, handler: Any) -> Any:
        """``handler`` with its behaviour made a coroutine (a coroutine: as it is)."""
        for kind, make, streams_out in HANDLER_KINDS:
            behaviour = getattr(handler, kind)
            if not behaviour:
                continue
            if is_coroutine_behaviour(behaviour):
                return handler  # runs on the loop as it is
            if streams_out:
                adapted: Any = self._responses(behaviour, handler.request_streaming)
            else:
                adapted = self._response(behaviour, handler.request_streaming)
            return make(adapted, handler.request_deserializer, handler.response_serializer)
        return handler

    def _response(
        self, behaviour: Callable[[Any, Any], Any], streaming_requests: bool
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        pool = self._pool

        async def run(request: Any, context: Any) -> Any:
            loop = asyncio.get_running_loop()
            call = BlockingCallContext(context)
            if streaming_requests:
                request = _in_thread_requests(request, loop)
            variables = contextvars.copy_context()
            try:
                return await asyncio.wrap_future(
                    pool.submit(variables.run, behaviour, request, call)
                )
            finally:
                call.end()  # cancelled or not: the method sees that its call is over

        return run

    def _responses(
        self, behaviour: Callable[[Any, Any], Iterator[Any]], streaming_requests: bool
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        pool = self._pool

        async def run(request: Any, context: Any) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            call = BlockingCallContext(context)
            if streaming_requests:
                request = _in_thread_requests(request, loop)
            variables = contextvars.copy_context()
            responses = iter(variables.run(behaviour, request, call))  # a generator: no work yet
            step: Future[Any] | None = None
            try:
                while True:
                    step = pool.submit(variables.run, _following, responses)
                    item = await asyncio.wrap_future(step)
                    step = None
                    if item is _DONE:
                        return
                    yield item
            finally:
                call.end()
                # The generator's own cleanup, on the pool once it is not running.
                if step is None:
                    _close_on(pool, variables, responses)
                else:
                    step.add_done_callback(lambda _: _close_on(pool, variables, responses))

        return run


def _following(responses: Iterator[Any]) -> Any:
    return next(responses, _DONE)


def _close_on(
    pool: ThreadPoolExecutor, variables: contextvars.Context, responses: Iterator[Any]
) -> None:
    close = getattr(responses, "close", None)
    if close is None:
        return
    try:
        pool.submit(variables.run, close)
    except RuntimeError:  # the pool is shut down (the server stopped): close it here
        variables.run(close)
