"""Decision identifiers: sortable by time, unguessable, 26 characters.

The layout of a ULID (48 bits of milliseconds since the epoch, then 80 random bits, in
Crockford's base32), so ids sort in the order decisions were made and a log can be
searched by id prefix; the random part makes them unguessable and collision-free across
replicas without coordination.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time

__all__ = ["decision_id", "decision_id_time_ms", "derived_decision_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {ch: i for i, ch in enumerate(_ALPHABET)}
_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode("ascii"))


# Byte -> the base32 character of its low 5 bits. Every character is the image of
# exactly 8 bytes (256 = 8 x 32), so uniform random bytes give uniform, independent
# characters: 16 of them are 80 random bits.
_RANDOM_CHARACTER = bytes(_ALPHABET.encode("ascii")[byte & 31] for byte in range(256))


class _RandomPool:
    """The 80 random bits of ids, as 16 base32 characters, from the OS's CSPRNG 4 KiB at
    a time: one system call per 256 ids instead of one each, and no per-id encoding
    (both cost more on the request path than the rest of the id)."""

    _CHUNK = 16 * 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._characters = ""
        self._position = 0

    def next16(self) -> str:
        with self._lock:
            start = self._position
            if start + 16 > len(self._characters):
                raw = os.urandom(self._CHUNK)
                self._characters = raw.translate(_RANDOM_CHARACTER).decode("ascii")
                start = 0
            self._position = start + 16
            return self._characters[start : start + 16]


_RANDOM = _RandomPool()
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]  # by 10-bit value
_last_time: tuple[int, str] = (-1, "")  # (milliseconds, their 10 characters): one per ms


def _time_characters(millis: int) -> str:
    """The first 10 characters of an id: the 48-bit time (ULID's layout puts the random
    80 bits in exactly the last 16 characters)."""
    global _last_time
    cached = _last_time
    if cached[0] == millis:
        return cached[1]
    pairs = _PAIRS  # 10 characters = 50 bits (the top 2 are zero), 10 bits a pair
    text = (
        pairs[millis >> 40 & 1023]
        + pairs[millis >> 30 & 1023]
        + pairs[millis >> 20 & 1023]
        + pairs[millis >> 10 & 1023]
        + pairs[millis & 1023]
    )
    _last_time = (millis, text)  # one tuple: other threads see the old pair or the new
    return text


def decision_id(now_ms: int | None = None) -> str:
    """A new decision id for a decision made at ``now_ms`` (default: now)."""
    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    return _time_characters(millis) + _RANDOM.next16()


def derived_decision_id(now_ms: int, secret: bytes, name: str) -> str:
    """A decision id whose 80 "random" bits are derived from a secret and a name
    (HMAC-SHA256): the same for the same inputs, so that a resumed batch job finds the
    ids it already logged; unguessable without the secret, like :func:`decision_id`."""
    digest = hmac.new(secret, name.encode("utf-8"), hashlib.sha256).digest()
    return _encode((now_ms << 80) | int.from_bytes(digest[:10], "big"))


def _encode(value: int) -> str:
    """``value`` (< 2**130) as 26 base32 digits, most significant first. Shifted into 160
    bits, its first 26 RFC 4648 base32 characters are those digits; translated to
    Crockford's alphabet (a Python loop over the digits cost more than the HMAC)."""
    return (
        base64.b32encode((value << 30).to_bytes(20, "big"))[:26]
        .translate(_TO_CROCKFORD)
        .decode("ascii")
    )


def decision_id_time_ms(identifier: str) -> int:
    """The milliseconds since the epoch encoded in a decision id."""
    if len(identifier) != 26 or any(ch not in _DECODE for ch in identifier):
        raise ValueError("a decision id is 26 characters of Crockford base32")
    value = 0
    for ch in identifier:
        value = (value << 5) | _DECODE[ch]
    return value >> 80
