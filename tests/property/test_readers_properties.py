"""Property tests of the CSV line filter (records/readers.py): whatever the lines and
however the file's bytes arrive, exactly the lines that are UTF-8 and within the limit
reach the parser, in order and ended, and every other line is reported once, with its
number and reason."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from records.readers import _LineFilter

LIMIT = 16

_LINES = st.lists(
    st.one_of(
        st.binary(max_size=LIMIT + 4).map(lambda b: b.replace(b"\n", b"")),
        st.text(max_size=LIMIT).map(lambda t: t.replace("\n", "").encode("utf-8")),
        st.sampled_from([b"a" * LIMIT + b"\r", b"a" * LIMIT + b"\r\r", b"\xc3", b"x" * 40]),
    ),
    max_size=30,
)


class _Trickle(io.RawIOBase):
    """A file that hands out its bytes in the given piece sizes (then the rest)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data = memoryview(data)
        self._sizes = iter(sizes)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        piece = next(self._sizes, size)
        out = bytes(self._data[self._at : self._at + min(piece, size)])
        self._at += len(out)
        return out


def _expected(line: bytes) -> str | None:
    if len(line) - line.endswith(b"\r") > LIMIT:
        return "line_too_long"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_encoding"
    return None


@settings(max_examples=300)
@given(
    lines=_LINES,
    final_end=st.booleans(),
    sizes=st.lists(st.integers(min_value=1, max_value=50), max_size=40),
    buffer_size=st.integers(min_value=1, max_value=64),
)
def test_the_filter_passes_good_lines_and_reports_the_others(
    lines: list[bytes], final_end: bool, sizes: list[int], buffer_size: int
) -> None:
    data = b"\n".join([b"header", *lines]) + (b"\n" if final_end else b"")
    lines_filter = _LineFilter(_Trickle(data, sizes), max_line_bytes=LIMIT)  # type: ignore[arg-type]
    out = bytearray()
    buffer = bytearray(buffer_size)
    while n := lines_filter.readinto(buffer):
        out += buffer[:n]
    kept = [b"header"] + [line for line in lines if _expected(line) is None]
    if not final_end and lines and lines[-1] == b"" and _expected(lines[-1]) is None:
        kept.pop()  # a file ending in "\n" then nothing: no empty last line
    assert bytes(out) == b"".join(line + b"\n" for line in kept)
    reported = [(r.line, r.reason) for r in lines_filter.rejected]
    assert reported == [
        (number, reason)
        for number, line in enumerate(lines, start=2)
        if (reason := _expected(line)) is not None
    ]
    assert lines_filter.count == len(data)
