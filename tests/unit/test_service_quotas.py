"""service.quotas.QuotaBook: a token bucket per client, driven by a fake clock."""

from __future__ import annotations

import hashlib

import pytest

from service.clients import Client, Role
from service.problems import QuotaExceeded
from service.quotas import QuotaBook


class FakeClock:
    def __init__(self, start: float = 500.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client(name: str = "bank-a", *, rate: float = 2.0, burst: int = 3, key: str = "k1") -> Client:
    return Client(
        name=name,
        role=Role.LENDER,
        quota_per_second=rate,
        burst=burst,
        key_sha256=hashlib.sha256(key.encode()).hexdigest(),
        created_at="2026-01-01T00:00:00+00:00",
    )


def spend(book: QuotaBook, who: Client, times: int) -> None:
    for _ in range(times):
        book.take(who)


def test_burst_then_refusal_with_the_time_to_one_token() -> None:
    book = QuotaBook(clock=FakeClock())
    who = client(rate=2.0, burst=3)
    spend(book, who, 3)
    with pytest.raises(QuotaExceeded) as caught:
        book.take(who)
    assert caught.value.retry_after == pytest.approx(0.5)


def test_retry_after_counts_the_partial_refill() -> None:
    clock = FakeClock()
    book = QuotaBook(clock=clock)
    who = client(rate=4.0, burst=1)
    book.take(who)
    clock.advance(0.1)  # 0.4 of a token back; 0.6 missing at 4 per second
    with pytest.raises(QuotaExceeded) as caught:
        book.take(who)
    assert caught.value.retry_after == pytest.approx(0.15)


def test_one_token_is_back_after_retry_after() -> None:
    clock = FakeClock()
    book = QuotaBook(clock=clock)
    who = client(rate=2.0, burst=3)
    spend(book, who, 3)
    with pytest.raises(QuotaExceeded) as caught:
        book.take(who)
    clock.advance(caught.value.retry_after)
    book.take(who)
    with pytest.raises(QuotaExceeded):
        book.take(who)


def test_just_before_refill_is_still_refused() -> None:
    clock = FakeClock()
    book = QuotaBook(clock=clock)
    who = client(rate=2.0, burst=1)
    book.take(who)
    clock.advance(0.49)
    with pytest.raises(QuotaExceeded):
        book.take(who)


def test_sustained_rate_after_the_burst() -> None:
    clock = FakeClock()
    book = QuotaBook(clock=clock)
    who = client(rate=10.0, burst=2)
    spend(book, who, 2)
    for _ in range(20):
        clock.advance(0.1)
        book.take(who)  # one token per 0.1 s


def test_refill_is_capped_at_the_burst() -> None:
    clock = FakeClock()
    book = QuotaBook(clock=clock)
    who = client(rate=5.0, burst=3)
    spend(book, who, 3)
    clock.advance(3600)
    spend(book, who, 3)
    with pytest.raises(QuotaExceeded):
        book.take(who)


def test_a_refused_call_spends_nothing() -> None:
    book = QuotaBook(clock=FakeClock())
    who = client(rate=1.0, burst=3)
    book.take(who, count=2)
    with pytest.raises(QuotaExceeded):
        book.take(who, count=2)
    book.take(who)  # the one token left is still there


def test_clients_have_separate_buckets() -> None:
    book = QuotaBook(clock=FakeClock())
    first, second = client("bank-a"), client("bank-b", key="k2")
    spend(book, first, 3)
    with pytest.raises(QuotaExceeded):
        book.take(first)
    spend(book, second, 3)
    with pytest.raises(QuotaExceeded):
        book.take(second)


def test_a_reissued_key_starts_a_fresh_bucket() -> None:
    book = QuotaBook(clock=FakeClock())
    old, new = client("bank-a", key="old-key"), client("bank-a", key="new-key")
    spend(book, old, 3)
    with pytest.raises(QuotaExceeded):
        book.take(old)
    spend(book, new, 3)
    with pytest.raises(QuotaExceeded):
        book.take(new)


def test_refusal_message_names_the_quota() -> None:
    book = QuotaBook(clock=FakeClock())
    who = client(rate=2.0, burst=1)
    book.take(who)
    with pytest.raises(QuotaExceeded) as caught:
        book.take(who)
    assert "2 calls per second" in caught.value.message
