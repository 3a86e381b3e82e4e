"""service.clients.ClientRegistry: keys shown once, stored hashed, reloaded live."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from service.clients import Client, ClientRegistry, ClientsFileError, Role


class FakeMonotonic:
    def __init__(self, start: float = 10_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr("service.clients.time.monotonic", fake)
    return fake


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "clients.json"


def bump_mtime(path: Path, seconds: float = 5.0) -> None:
    """Filesystem timestamps are coarse (a clock tick), so two writes in a row can share
    an mtime; tests of live reload move the mtime on explicitly to stay deterministic."""
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before + int(seconds * 1e9), before + int(seconds * 1e9)))


def test_a_missing_file_is_an_empty_registry(path: Path) -> None:
    registry = ClientRegistry(path)
    assert registry.clients() == []
    assert registry.authenticate("crk_anything") is None


def test_add_returns_the_client_and_a_crk_key(path: Path) -> None:
    registry = ClientRegistry(path)
    client, key = registry.add("bank-a", "lender", quota_per_second=20, burst=40)
    assert key.startswith("crk_")
    assert len(key) > len("crk_") + 40  # 256 random bits
    assert client.name == "bank-a"
    assert client.role is Role.LENDER
    assert client.quota_per_second == 20.0
    assert client.burst == 40
    assert client.key_sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert registry.clients() == [client]
    assert ClientRegistry(path).clients() == [client]


def test_keys_are_unique(path: Path) -> None:
    registry = ClientRegistry(path)
    keys = {registry.add(f"client-{n}", "lender")[1] for n in range(5)}
    assert len(keys) == 5


def test_default_burst_follows_the_quota(path: Path) -> None:
    registry = ClientRegistry(path)
    assert registry.add("fast", "lender", quota_per_second=25)[0].burst == 25
    assert registry.add("slow", "lender", quota_per_second=0.5)[0].burst == 1


def test_the_file_holds_only_the_key_digest(path: Path) -> None:
    registry = ClientRegistry(path)
    _, key = registry.add("bank-a", "lender")
    text = path.read_text(encoding="utf-8")
    assert key not in text
    assert key[len("crk_") :] not in text
    assert "crk_" not in text
    assert hashlib.sha256(key.encode()).hexdigest() in text
    [entry] = json.loads(text)["clients"]
    assert entry["name"] == "bank-a"
    assert entry["key_sha256"] == hashlib.sha256(key.encode()).hexdigest()


def test_the_file_is_private(path: Path) -> None:
    registry = ClientRegistry(path)
    registry.add("bank-a", "lender")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    registry.add("bank-b", "agency")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_file_is_created_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "creditrisk" / "clients.json"
    ClientRegistry(path).add("bank-a", "lender")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["clients.json"]  # no temp file left


def test_authenticate_finds_the_client_of_a_key(path: Path) -> None:
    registry = ClientRegistry(path)
    first, first_key = registry.add("bank-a", "lender")
    second, second_key = registry.add("agency-b", "agency")
    assert registry.authenticate(first_key) == first
    assert registry.authenticate(second_key) == second


@pytest.mark.parametrize(
    "presented", ["", "crk_", "crk_wrong", "not-a-key", "\udcff", "x" * 10_000]
)
def test_authenticate_refuses_a_key_of_no_client(path: Path, presented: str) -> None:
    registry = ClientRegistry(path)
    registry.add("bank-a", "lender")
    assert registry.authenticate(presented) is None


def test_authenticate_refuses_a_near_miss_and_the_digest_itself(path: Path) -> None:
    registry = ClientRegistry(path)
    client, key = registry.add("bank-a", "lender")
    assert registry.authenticate(key[:-1]) is None
    assert registry.authenticate(key + "x") is None
    assert registry.authenticate(key.upper() if key != key.upper() else key.lower()) is None
    assert registry.authenticate(client.key_sha256) is None


def test_a_duplicate_name_is_refused(path: Path) -> None:
    registry = ClientRegistry(path)
    _, key = registry.add("bank-a", "lender")
    with pytest.raises(ClientsFileError, match="bank-a"):
        registry.add("bank-a", "agency")
    assert registry.authenticate(key) is not None  # the first one is untouched
    assert [c.role for c in registry.clients()] == [Role.LENDER]


@pytest.mark.parametrize(
    "name",
    ["", "Bank-A", "-bank", ".bank", "_bank", "bank a", "bank/a", "bänk", "a" * 33, "bank\ta"],
)
def test_invalid_names_are_refused(path: Path, name: str) -> None:
    registry = ClientRegistry(path)
    with pytest.raises(ClientsFileError, match="client name"):
        registry.add(name, "lender")
    assert registry.clients() == []
    assert not path.exists()


def test_a_name_with_a_trailing_newline_is_refused(path: Path) -> None:
    registry = ClientRegistry(path)
    with pytest.raises(ClientsFileError, match="client name"):
        registry.add("bank-a\n", "lender")


@pytest.mark.parametrize("name", ["a", "7", "a" * 32, "bank-a.branch_2"])
def test_valid_names_are_accepted(path: Path, name: str) -> None:
    client, _ = ClientRegistry(path).add(name, "lender")
    assert client.name == name


@pytest.mark.parametrize("role", ["root", "", "Lender", "LENDER", "lenders"])
def test_unknown_roles_are_refused(path: Path, role: str) -> None:
    with pytest.raises(ClientsFileError, match="unknown role") as caught:
        ClientRegistry(path).add("bank-a", role)
    for known in ("lender", "agency", "regulator", "reporter", "admin"):
        assert known in str(caught.value)
    assert not path.exists()


@pytest.mark.parametrize("role", list(Role))
def test_every_role_can_be_given(path: Path, role: Role) -> None:
    registry = ClientRegistry(path)
    client, key = registry.add("c1", role.value)
    assert client.role is role
    assert ClientRegistry(path).authenticate(key) == client


@pytest.mark.parametrize("quota", [0, -1, -0.5])
def test_a_quota_that_is_not_positive_is_refused(path: Path, quota: float) -> None:
    with pytest.raises(ClientsFileError, match="quota"):
        ClientRegistry(path).add("bank-a", "lender", quota_per_second=quota)


def test_revoke_then_the_key_no_longer_authenticates(path: Path) -> None:
    registry = ClientRegistry(path)
    _, revoked_key = registry.add("bank-a", "lender")
    kept, kept_key = registry.add("bank-b", "lender")
    registry.revoke("bank-a")
    assert registry.authenticate(revoked_key) is None
    assert registry.authenticate(kept_key) == kept
    assert [c.name for c in registry.clients()] == ["bank-b"]
    assert ClientRegistry(path).authenticate(revoked_key) is None


def test_revoking_an_unknown_client_is_refused(path: Path) -> None:
    with pytest.raises(ClientsFileError, match="nobody"):
        ClientRegistry(path).revoke("nobody")


def test_a_name_can_be_reissued_after_revoke_with_a_new_key(path: Path) -> None:
    registry = ClientRegistry(path)
    old, old_key = registry.add("bank-a", "lender")
    registry.revoke("bank-a")
    new, new_key = registry.add("bank-a", "lender")
    assert new_key != old_key
    assert new.key_sha256 != old.key_sha256
    assert registry.authenticate(old_key) is None
    assert registry.authenticate(new_key) == new


def test_clients_are_listed_by_name(path: Path) -> None:
    registry = ClientRegistry(path)
    for name in ("zeta", "alpha", "mid"):
        registry.add(name, "lender")
    assert [c.name for c in registry.clients()] == ["alpha", "mid", "zeta"]


def test_a_second_registry_sees_an_added_client_after_its_reload_check(
    path: Path, monotonic: FakeMonotonic
) -> None:
    writer = ClientRegistry(path)
    writer.add("bank-a", "lender")
    reader = ClientRegistry(path)
    assert [c.name for c in reader.clients()] == ["bank-a"]
    added, key = writer.add("bank-b", "agency")
    bump_mtime(path)
    monotonic.advance(1.5)
    assert reader.authenticate(key) == added


def test_a_second_registry_drops_a_revoked_client_after_its_reload_check(
    path: Path, monotonic: FakeMonotonic
) -> None:
    writer = ClientRegistry(path)
    _, key = writer.add("bank-a", "lender")
    reader = ClientRegistry(path)
    assert reader.authenticate(key) is not None
    writer.revoke("bank-a")
    bump_mtime(path)
    monotonic.advance(1.5)
    assert reader.authenticate(key) is None
    assert reader.clients() == []


def test_a_second_registry_sees_the_file_deleted_as_no_clients(
    path: Path, monotonic: FakeMonotonic
) -> None:
    _, key = ClientRegistry(path).add("bank-a", "lender")
    reader = ClientRegistry(path)
    assert reader.authenticate(key) is not None
    path.unlink()
    monotonic.advance(1.5)
    assert reader.authenticate(key) is None


def test_a_rewrite_with_an_unchanged_mtime_is_still_seen(
    path: Path, monotonic: FakeMonotonic
) -> None:
    writer = ClientRegistry(path)
    _, key = writer.add("bank-a", "lender")
    reader = ClientRegistry(path)
    assert reader.authenticate(key) is not None
    before = path.stat().st_mtime_ns
    writer.revoke("bank-a")
    os.utime(path, ns=(before, before))  # what a coarse clock tick does to back-to-back writes
    monotonic.advance(1.5)
    assert reader.authenticate(key) is None


CORRUPT_FILES = [
    "{not json",
    "",
    "[]",
    '{"clients": 3}',
    '{"clients": [{"name": "a"}]}',
    '{"clients": [{"name": "a", "role": "root", "quota_per_second": 1, "burst": 1, '
    '"key_sha256": "' + "0" * 64 + '", "created_at": "x"}]}',
    '{"clients": [{"name": "a", "role": "lender", "quota_per_second": 1, "burst": 1, '
    '"key_sha256": "abc", "created_at": "x"}]}',
    '{"clients": [{"name": "a", "role": "lender", "quota_per_second": "fast", "burst": 1, '
    '"key_sha256": "' + "0" * 64 + '", "created_at": "x"}]}',
]


@pytest.mark.parametrize("content", CORRUPT_FILES)
def test_a_corrupt_file_is_refused_at_construction(path: Path, content: str) -> None:
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ClientsFileError, match="not a valid clients file"):
        ClientRegistry(path)


def test_a_file_that_is_not_utf8_is_refused(path: Path) -> None:
    path.write_bytes(b'{"clients": [\xff\xfe]}')
    with pytest.raises(ClientsFileError):
        ClientRegistry(path)


@pytest.mark.parametrize("content", CORRUPT_FILES[:3])
def test_a_running_registry_keeps_its_last_good_state_on_a_corrupt_file(
    path: Path, monotonic: FakeMonotonic, content: str
) -> None:
    registry = ClientRegistry(path)
    client, key = registry.add("bank-a", "lender")
    path.write_text(content, encoding="utf-8")
    bump_mtime(path)
    monotonic.advance(1.5)
    assert registry.authenticate(key) == client
    assert registry.clients() == [client]
    monotonic.advance(1.5)
    assert registry.authenticate(key) == client


def test_a_running_registry_picks_up_the_file_once_it_is_fixed(
    path: Path, monotonic: FakeMonotonic
) -> None:
    registry = ClientRegistry(path)
    _, old_key = registry.add("bank-a", "lender")
    good = path.read_text(encoding="utf-8")
    path.write_text("{broken", encoding="utf-8")
    bump_mtime(path, 5)
    monotonic.advance(1.5)
    assert registry.authenticate(old_key) is not None
    other = ClientRegistry(path.with_name("other.json"))
    new_client, new_key = other.add("bank-b", "agency")
    path.write_text(
        good.replace('"clients": [', '"clients": [' + json.dumps(_entry(new_client)) + ", ", 1),
        encoding="utf-8",
    )
    bump_mtime(path, 10)
    monotonic.advance(1.5)
    assert registry.authenticate(new_key) == new_client
    assert registry.authenticate(old_key) is not None


def _entry(client: Client) -> dict[str, object]:
    return {
        "name": client.name,
        "role": client.role.value,
        "quota_per_second": client.quota_per_second,
        "burst": client.burst,
        "key_sha256": client.key_sha256,
        "created_at": client.created_at,
    }


def test_source_is_the_upper_case_name(path: Path) -> None:
    client, _ = ClientRegistry(path).add("bank-a", "lender")
    assert client.source == "BANK-A"


def test_registry_tables_are_granted_to_reporters_only_and_kept(tmp_path: Path) -> None:
    from service.clients import REGISTRY_TABLES

    registry = ClientRegistry(tmp_path / "clients.json")
    assert REGISTRY_TABLES == ("legal_entity", "natural_person", "relation")
    amr, _ = registry.add("amr-33", "reporter", registries=("relation", "legal_entity"))
    assert amr.registries == ("legal_entity", "relation")
    with pytest.raises(ClientsFileError, match="not registry tables: repayment"):
        registry.add("bank", "reporter", registries=("repayment",))
    with pytest.raises(ClientsFileError, match="only a reporter"):
        registry.add("lender-1", "lender", registries=("relation",))
    court, _ = registry.add("court-33", "reporter")
    reread = {c.name: c for c in ClientRegistry(tmp_path / "clients.json").clients()}
    assert reread["amr-33"].registries == ("legal_entity", "relation")
    assert reread["court-33"].registries == court.registries == ()
