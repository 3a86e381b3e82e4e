"""Keyed pseudonyms for natural persons.

A person is known to the store only as HMAC-SHA256(secret, resident id), hex
encoded. The secret is the one thing that links a pseudonym back to a number, so
it lives in its own file (mode 0600) under the data directory, created on first
use, or wherever the settings point.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PERSON_KEY_LENGTH", "Pseudonymiser", "is_person_key", "load_or_create_secret"]

_SECRET_BYTES = 32
PERSON_KEY_LENGTH = 64  # hex of a SHA-256 HMAC; a USCC has 18 characters


def is_person_key(key: str) -> bool:
    """A subject key is a person's pseudonym (else an entity's USCC)."""
    return len(key) == PERSON_KEY_LENGTH


def load_or_create_secret(path: Path) -> bytes:
    """Read the pseudonymisation key, creating a random one if the file is absent."""
    if path.exists():
        secret = path.read_bytes().strip()
        if len(secret) < _SECRET_BYTES:
            raise ValueError(
                f"pseudonym secret file {str(path)!r} holds {len(secret)} bytes; "
                f"at least {_SECRET_BYTES} are required"
            )
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(_SECRET_BYTES).encode("ascii")
    # O_EXCL: two processes starting at once must not both write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_secret(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret + b"\n")
    return secret


class Pseudonymiser:
    """Maps resident identity numbers to stable keyed pseudonyms."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < _SECRET_BYTES:
            raise ValueError(f"pseudonym secret must be at least {_SECRET_BYTES} bytes")
        self._secret = secret

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymiser(<secret>)"

    def person_key(self, resident_id: str) -> str:
        return hmac.digest(self._secret, resident_id.encode("ascii"), hashlib.sha256).hex()

    def person_keys(self, resident_ids: Iterable[str]) -> list[str]:
        secret = self._secret
        sha256 = hashlib.sha256
        return [hmac.digest(secret, r.encode("ascii"), sha256).hex() for r in resident_ids]
