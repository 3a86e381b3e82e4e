"""Property tests of audit.ids (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audit.ids import decision_id, decision_id_time_ms

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
MILLIS = st.integers(min_value=0, max_value=2**48 - 1)


@given(MILLIS)
def test_time_round_trips(now_ms: int) -> None:
    ident = decision_id(now_ms)
    assert len(ident) == 26
    assert set(ident) <= set(ALPHABET)
    assert decision_id_time_ms(ident) == now_ms


@given(MILLIS, MILLIS)
def test_ids_sort_like_their_times(a: int, b: int) -> None:
    ida, idb = decision_id(a), decision_id(b)
    if a < b:
        assert ida < idb
    elif a > b:
        assert ida > idb
    else:
        assert ida[:10] == idb[:10]


@given(st.text())
def test_arbitrary_text_decodes_or_raises_value_error(text: str) -> None:
    try:
        millis = decision_id_time_ms(text)
    except ValueError:
        return
    assert len(text) == 26
    assert isinstance(millis, int) and millis >= 0


@given(st.text(alphabet=ALPHABET, min_size=26, max_size=26))
def test_every_26_character_crockford_string_decodes(text: str) -> None:
    assert 0 <= decision_id_time_ms(text) < 2**50
