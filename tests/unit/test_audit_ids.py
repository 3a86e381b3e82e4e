"""audit.ids: ULID-layout decision ids."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.ids import _encode, decision_id, decision_id_time_ms, derived_decision_id

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")  # no I, L, O, U
NOW_MS = 1_795_000_000_000  # late 2026


def test_an_id_is_26_characters_of_crockford_base32() -> None:
    ident = decision_id(NOW_MS)
    assert len(ident) == 26
    assert set(ident) <= CROCKFORD


def test_default_time_is_now() -> None:
    before = time.time_ns() // 1_000_000
    ident = decision_id()
    after = time.time_ns() // 1_000_000
    assert before <= decision_id_time_ms(ident) <= after


def test_time_round_trips() -> None:
    assert decision_id_time_ms(decision_id(NOW_MS)) == NOW_MS


def test_epoch_is_all_zero_time_characters() -> None:
    ident = decision_id(0)
    assert ident[:10] == "0000000000"
    assert decision_id_time_ms(ident) == 0


def test_decodes_the_ulid_specification_example() -> None:
    # The ulid reference implementation: decodeTime("01ARYZ6S41TSV4RRFFQ69G5FAV") is 1469918176385.
    assert decision_id_time_ms("01ARYZ6S41TSV4RRFFQ69G5FAV") == 1_469_918_176_385


def test_ids_sort_in_time_order() -> None:
    times = [NOW_MS + step for step in (0, 1, 2, 999, 1000, 86_400_000, 10**9)]
    ids = [decision_id(t) for t in times]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)


def test_many_ids_in_the_same_millisecond_are_distinct() -> None:
    ids = {decision_id(NOW_MS) for _ in range(5_000)}
    assert len(ids) == 5_000
    assert {decision_id_time_ms(i) for i in ids} == {NOW_MS}


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "01ARZ3NDEKTSV4RRFFQ69G5FA",  # 25
        "01ARZ3NDEKTSV4RRFFQ69G5FAVX",  # 27
        "01arz3ndektsv4rrffq69g5fav",  # lower case
        "01ARZ3NDEKTSV4RRFFQ69G5FAI",  # I is not in the alphabet
        "01ARZ3NDEKTSV4RRFFQ69G5FAL",
        "01ARZ3NDEKTSV4RRFFQ69G5FAO",
        "01ARZ3NDEKTSV4RRFFQ69G5FAU",
        "01ARZ3NDEKTSV4RRFFQ69G5FA-",
        "01ARZ3NDEKTSV4RRFFQ69G5FA ",
        "01ARZ3NDEKTSV4RRFFQ69G5FAÄ",
        "０1ARZ3NDEKTSV4RRFFQ69G5FAV",  # full-width digit zero
    ],
)
def test_malformed_ids_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="26 characters"):
        decision_id_time_ms(bad)


def test_derived_ids_are_deterministic_per_secret_and_name() -> None:
    first = derived_decision_id(1_700_000_000_000, b"s" * 16, "subject-1")
    assert first == derived_decision_id(1_700_000_000_000, b"s" * 16, "subject-1")
    assert first != derived_decision_id(1_700_000_000_000, b"t" * 16, "subject-1")
    assert first != derived_decision_id(1_700_000_000_000, b"s" * 16, "subject-2")
    assert decision_id_time_ms(first) == 1_700_000_000_000


@given(st.integers(min_value=0, max_value=2**130 - 1))
def test_encoding_is_the_26_base32_digits_most_significant_first(value: int) -> None:
    digits = "".join(
        "0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(value >> (5 * place)) & 31]
        for place in reversed(range(26))
    )
    assert _encode(value) == digits


def test_random_bytes_map_evenly_onto_the_alphabet() -> None:
    # Each character is the image of 8 of the 256 byte values: uniform bytes, uniform
    # characters, so an id's last 16 characters carry 80 random bits.
    from collections import Counter

    from audit.ids import _RANDOM_CHARACTER

    counts = Counter(_RANDOM_CHARACTER.decode("ascii"))
    assert set(counts) == CROCKFORD
    assert set(counts.values()) == {8}


def test_ids_made_past_one_random_chunk_stay_distinct_and_keep_their_time() -> None:
    ids = [decision_id(NOW_MS + i // 1000) for i in range(3 * 256 + 5)]  # > 3 chunks
    assert len(set(ids)) == len(ids)
    assert [decision_id_time_ms(i) for i in ids] == [NOW_MS + i // 1000 for i in range(len(ids))]


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_the_time_characters_are_the_encoding_of_the_time(millis: int) -> None:
    assert decision_id(millis)[:10] == _encode(millis << 80)[:10]
    assert decision_id_time_ms(decision_id(millis)) == millis
