from __future__ import annotations

import stat
from pathlib import Path

import pytest
from conftest import TEST_SECRET, make_resident_id

from records.pseudonym import Pseudonymiser, load_or_create_secret


def test_pseudonym_is_stable_keyed_and_hides_the_number() -> None:
    number = make_resident_id(7)
    first = Pseudonymiser(TEST_SECRET).person_key(number)
    assert first == Pseudonymiser(TEST_SECRET).person_key(number)
    assert len(first) == 64 and number not in first
    assert first != Pseudonymiser(TEST_SECRET + b"x").person_key(number)
    assert Pseudonymiser(TEST_SECRET).person_keys([number]) == [first]
    assert "secret" in repr(Pseudonymiser(TEST_SECRET)) and "0123" not in repr(
        Pseudonymiser(TEST_SECRET)
    )


def test_secret_file_is_created_once_private(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pseudonym.key"
    secret = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == secret


def test_short_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 32"):
        load_or_create_secret(path)
