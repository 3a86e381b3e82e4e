"""service.idempotency.IdempotencyCache: replays within the window, refuses a reused id."""

from __future__ import annotations

import threading

import pytest

from service.idempotency import IdempotencyCache
from service.problems import InvalidRequest


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_cache(
    window: float = 60.0, max_entries: int = 100
) -> tuple[IdempotencyCache[str], FakeClock]:
    clock = FakeClock()
    return IdempotencyCache[str](window, max_entries, clock=clock), clock


def test_unknown_request_id_has_no_answer() -> None:
    cache, _ = make_cache()
    assert cache.get("bank-a", "req-1", ("Score", "x")) is None


def test_same_client_request_and_fingerprint_gets_the_stored_answer() -> None:
    cache, clock = make_cache()
    assert cache.put("bank-a", "req-1", ("Score", "x"), "answer-1") == "answer-1"
    clock.advance(5)
    assert cache.get("bank-a", "req-1", ("Score", "x")) == "answer-1"


def test_reused_request_id_with_a_different_fingerprint_is_refused() -> None:
    cache, _ = make_cache()
    cache.put("bank-a", "req-1", ("Score", "x"), "answer-1")
    with pytest.raises(InvalidRequest) as caught:
        cache.get("bank-a", "req-1", ("Score", "y"))
    assert caught.value.field == "request_id"
    assert caught.value.rule == "reused"


def test_answer_holds_until_the_end_of_the_window() -> None:
    cache, clock = make_cache(window=30.0)
    cache.put("bank-a", "req-1", "fp", "answer-1")
    clock.advance(29.9)
    assert cache.get("bank-a", "req-1", "fp") == "answer-1"


def test_answer_expires_after_the_window() -> None:
    cache, clock = make_cache(window=30.0)
    cache.put("bank-a", "req-1", "fp", "answer-1")
    clock.advance(30.1)
    assert cache.get("bank-a", "req-1", "fp") is None


def test_after_expiry_the_request_id_may_be_used_for_a_new_request() -> None:
    cache, clock = make_cache(window=30.0)
    cache.put("bank-a", "req-1", "fp-old", "answer-old")
    clock.advance(31)
    assert cache.get("bank-a", "req-1", "fp-new") is None  # no "reused" error
    assert cache.put("bank-a", "req-1", "fp-new", "answer-new") == "answer-new"
    assert cache.get("bank-a", "req-1", "fp-new") == "answer-new"


def test_put_after_expiry_replaces_the_expired_answer() -> None:
    cache, clock = make_cache(window=30.0)
    cache.put("bank-a", "req-1", "fp", "answer-old")
    clock.advance(31)
    assert cache.put("bank-a", "req-1", "fp", "answer-new") == "answer-new"
    assert cache.get("bank-a", "req-1", "fp") == "answer-new"


def test_clients_with_the_same_request_id_are_independent() -> None:
    cache, _ = make_cache()
    cache.put("bank-a", "req-1", "fp-a", "answer-a")
    assert cache.get("bank-b", "req-1", "fp-b") is None  # neither a replay nor "reused"
    assert cache.put("bank-b", "req-1", "fp-b", "answer-b") == "answer-b"
    assert cache.get("bank-a", "req-1", "fp-a") == "answer-a"
    assert cache.get("bank-b", "req-1", "fp-b") == "answer-b"


def test_empty_request_id_is_never_stored() -> None:
    cache, _ = make_cache()
    assert cache.put("bank-a", "", "fp-1", "answer-1") == "answer-1"
    assert cache.get("bank-a", "", "fp-1") is None
    assert cache.get("bank-a", "", "fp-2") is None  # and never "reused"
    assert cache.put("bank-a", "", "fp-1", "answer-2") == "answer-2"


def test_max_entries_evicts_the_oldest() -> None:
    cache, clock = make_cache(max_entries=2)
    cache.put("bank-a", "req-1", "fp", "answer-1")
    clock.advance(1)
    cache.put("bank-a", "req-2", "fp", "answer-2")
    clock.advance(1)
    cache.put("bank-a", "req-3", "fp", "answer-3")
    assert cache.get("bank-a", "req-1", "fp") is None
    assert cache.get("bank-a", "req-2", "fp") == "answer-2"
    assert cache.get("bank-a", "req-3", "fp") == "answer-3"


def test_bound_holds_across_many_distinct_ids() -> None:
    cache, clock = make_cache(max_entries=10)
    for n in range(100):
        clock.advance(0.01)
        cache.put("bank-a", f"req-{n}", "fp", f"answer-{n}")
    kept = [n for n in range(100) if cache.get("bank-a", f"req-{n}", "fp") is not None]
    assert kept == list(range(90, 100))


@pytest.mark.parametrize(("window", "max_entries"), [(0.0, 100), (60.0, 0)])
def test_zero_window_or_size_disables_the_cache(window: float, max_entries: int) -> None:
    cache, _ = make_cache(window=window, max_entries=max_entries)
    assert not cache.enabled
    assert cache.put("bank-a", "req-1", "fp-1", "answer-1") == "answer-1"
    assert cache.get("bank-a", "req-1", "fp-1") is None
    assert cache.get("bank-a", "req-1", "fp-2") is None  # nothing to conflict with
    assert cache.put("bank-a", "req-1", "fp-1", "answer-2") == "answer-2"


def test_enabled_with_a_positive_window_and_size() -> None:
    cache, _ = make_cache(window=1.0, max_entries=1)
    assert cache.enabled


def test_put_of_a_duplicate_returns_the_first_stored_answer() -> None:
    cache, _ = make_cache()
    first, second = "first", "second"
    assert cache.put("bank-a", "req-1", "fp", first) is first
    assert cache.put("bank-a", "req-1", "fp", second) is first
    assert cache.get("bank-a", "req-1", "fp") is first


def test_put_with_another_fingerprint_does_not_replace_the_stored_answer() -> None:
    cache, _ = make_cache()
    cache.put("bank-a", "req-1", "fp-1", "answer-1")
    cache.put("bank-a", "req-1", "fp-2", "answer-2")
    assert cache.get("bank-a", "req-1", "fp-1") == "answer-1"


def test_concurrent_puts_of_one_request_all_get_the_same_answer() -> None:
    cache = IdempotencyCache[object](60.0, 100, clock=FakeClock())
    answers = [object() for _ in range(16)]
    results: list[object] = [None] * len(answers)
    barrier = threading.Barrier(len(answers))

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = cache.put("bank-a", "req-1", "fp", answers[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(r) for r in results}) == 1
    assert results[0] in answers
    assert cache.get("bank-a", "req-1", "fp") is results[0]
