"""service.interceptors.InterceptorChain: the order of the hooks, and who sends a status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from service.interceptors import CallInterceptor, InterceptorChain


class Recorder(CallInterceptor):
    def __init__(self, name: str, seen: list[str], *, fails: bool = False) -> None:
        self.name, self.seen, self.fails = name, seen, fails
        self.status: grpc.Status | None = None

    def enter(self, method: str, request: Any, context: Any) -> tuple[Any, Any]:
        self.seen.append(f"enter {self.name}")
        if self.fails:
            raise ValueError(f"{self.name} refuses")
        return [*request, self.name], self.name

    def leave(self, token: Any, error: BaseException | None) -> grpc.Status | None:
        self.seen.append(f"leave {token} {type(error).__name__ if error else 'ok'}")
        return self.status


class Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details, self.trailing_metadata = code, details, ()


class Context:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def abort(self, code: grpc.StatusCode, details: str, metadata: Any = ()) -> None:
        self.seen.append(f"abort {code.name} {details}")
        raise grpc.aio.AbortError()


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def wrapped(chain: InterceptorChain, handler: Any) -> Any:
    async def continuation(details: Any) -> Any:
        return handler

    return asyncio.run(chain.intercept_service(continuation, Details("/x.Y/Z")))


def test_hooks_run_outermost_first_in_and_innermost_first_out() -> None:
    seen: list[str] = []

    async def method(request: list[str], context: Any) -> list[str]:
        seen.append("method")
        return request

    chain = InterceptorChain([Recorder("a", seen), Recorder("b", seen)])
    handler = wrapped(chain, grpc.unary_unary_rpc_method_handler(method))
    assert asyncio.run(handler.unary_unary([], Context(seen))) == ["a", "b"]
    assert seen == ["enter a", "enter b", "method", "leave b ok", "leave a ok"]


def test_an_inner_status_is_seen_by_the_outer_hooks_then_sent_once() -> None:
    seen: list[str] = []

    async def method(request: list[str], context: Any) -> list[str]:
        raise KeyError("lost")

    outer, inner = Recorder("a", seen), Recorder("b", seen)
    inner.status = Status(grpc.StatusCode.NOT_FOUND, "no such thing")
    handler = wrapped(InterceptorChain([outer, inner]), grpc.unary_unary_rpc_method_handler(method))
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(handler.unary_unary([], Context(seen)))
    assert seen == [
        "enter a",
        "enter b",
        "leave b KeyError",
        "leave a _Ending",
        "abort NOT_FOUND no such thing",
    ]


def test_a_hook_that_refuses_is_not_left_and_the_error_goes_on_without_a_status() -> None:
    seen: list[str] = []

    async def method(request: list[str], context: Any) -> list[str]:
        raise AssertionError("not reached")

    chain = InterceptorChain([Recorder("a", seen), Recorder("b", seen, fails=True)])
    handler = wrapped(chain, grpc.unary_unary_rpc_method_handler(method))
    with pytest.raises(ValueError, match="b refuses"):
        asyncio.run(handler.unary_unary([], Context(seen)))
    assert seen == ["enter a", "enter b", "leave a ValueError"]


def test_a_stream_is_left_after_its_last_item() -> None:
    seen: list[str] = []

    async def method(request: list[str], context: Any) -> AsyncIterator[str]:
        for item in request:
            seen.append(f"item {item}")
            yield item

    chain = InterceptorChain([Recorder("a", seen)])
    handler = wrapped(chain, grpc.unary_stream_rpc_method_handler(method))

    async def collect() -> list[str]:
        return [item async for item in handler.unary_stream([], Context(seen))]

    assert asyncio.run(collect()) == ["a"]
    assert seen == ["enter a", "item a", "leave a ok"]


def test_a_plain_method_must_be_adapted_first() -> None:
    def plain(request: Any, context: Any) -> Any:
        return request

    chain = InterceptorChain([Recorder("a", [])])
    with pytest.raises(TypeError, match="plain method"):
        wrapped(chain, grpc.unary_unary_rpc_method_handler(plain))

    async def adapted(request: Any, context: Any) -> Any:
        return plain(request, context)

    adapting = InterceptorChain(
        [Recorder("a", [])],
        adapt=lambda method, handler: grpc.unary_unary_rpc_method_handler(adapted),
    )
    handler = wrapped(adapting, grpc.unary_unary_rpc_method_handler(plain))
    assert asyncio.run(handler.unary_unary([], Context([]))) == ["a"]
