"""API clients: who may call, in which role, with which quota.

Keys are random 256-bit tokens shown once, when made; the clients file keeps only their
SHA-256 (a key has full entropy, so a fast hash is as safe as a slow one and keeps the
per-call check at a microsecond). A presented key is hashed and its digest compared in
constant time with the stored digest found under it. The file is rewritten atomically and
re-read by a running server when it changes, so keys can be added and revoked live.

A reporter reports under its own code, so it can only add versions of its own records to
the tables whose natural key includes the source. The registry tables (legal entities,
natural persons, relations) are keyed without it: a version from any reporter supersedes
the registered one, so a reporter may report them only where its client entry grants it
(``registries``), e.g. the market regulator for legal entities and relations.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from records.tables import TABLE_ORDER, table_spec

__all__ = [
    "KEY_PREFIX",
    "REGISTRY_TABLES",
    "Client",
    "ClientRegistry",
    "ClientsFileError",
    "Role",
    "new_key",
]

KEY_PREFIX = "crk_"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")  # whole name: fullmatch
_RELOAD_CHECK_SECONDS = 1.0
REGISTRY_TABLES = tuple(t for t in TABLE_ORDER if "source" not in table_spec(t).natural_key)


class Role(StrEnum):
    LENDER = "lender"
    AGENCY = "agency"
    REGULATOR = "regulator"
    REPORTER = "reporter"
    ADMIN = "admin"


class ClientsFileError(ValueError):
    """The clients file, or a change asked of it, is invalid."""


@dataclass(frozen=True)
class Client:
    name: str
    role: Role
    quota_per_second: float  # decisions (or calls) per second, sustained
    burst: int  # how many may come at once
    key_sha256: str
    created_at: str
    registries: tuple[str, ...] = ()  # registry tables a reporter may report (see above)

    @property
    def source(self) -> str:
        """The client's reporter code on the inquiries it causes (records' CODE format)."""
        return self.name.upper()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ClientRegistry:
    """The clients file, loaded; ``authenticate`` is safe from any number of threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._by_digest: dict[str, Client] = {}
        self._clients: dict[str, Client] = {}
        self._version: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self._load()

    # -- reading ----------------------------------------------------------------------------

    def _load(self) -> None:
        version = self._file_version()
        clients = _parse(self.path) if version is not None else {}
        with self._lock:
            self._clients = clients
            self._by_digest = {client.key_sha256: client for client in clients.values()}
            self._version = version

    def _file_version(self) -> tuple[int, int, int] | None:
        """What tells one state of the file from another: the inode changes with every
        atomic rewrite (two rewrites can share an mtime on a coarse clock), mtime and size
        with an edit in place."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RELOAD_CHECK_SECONDS:
            return
        self._checked = now
        if self._file_version() != self._version:
            # A bad edit keeps the last good file in force; `clients` commands validate.
            with contextlib.suppress(ClientsFileError):
                self._load()

    def authenticate(self, key: str) -> Client | None:
        """The client whose key this is, or None."""
        self._maybe_reload()
        digest = _digest(key)
        client = self._by_digest.get(digest)
        if client is None or not hmac.compare_digest(client.key_sha256, digest):
            return None
        return client

    def clients(self) -> list[Client]:
        self._maybe_reload()
        return sorted(self._clients.values(), key=lambda c: c.name)

    # -- changing ---------------------------------------------------------------------------

    def add(
        self,
        name: str,
        role: Role | str,
        *,
        quota_per_second: float = 100.0,
        burst: int = 0,
        registries: tuple[str, ...] = (),
    ) -> tuple[Client, str]:
        """Register a client; returns it and its key (shown once, never stored)."""
        if not NAME_PATTERN.fullmatch(name):
            raise ClientsFileError(
                "a client name is 1-32 characters: lower-case letters, digits, '_', '.', '-', "
                "starting with a letter or digit"
            )
        try:
            role = Role(role)
        except ValueError:
            raise ClientsFileError(
                f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}"
            ) from None
        if quota_per_second <= 0:
            raise ClientsFileError("the quota must be a positive number of calls per second")
        if burst < 0:
            raise ClientsFileError("the burst must be a positive number of calls (0 = default)")
        _check_registries(registries, role)
        self._load()
        if name in self._clients:
            raise ClientsFileError(f"a client named {name!r} exists; revoke it first")
        key = new_key()
        client = Client(
            name=name,
            role=role,
            quota_per_second=float(quota_per_second),
            burst=burst or max(1, int(quota_per_second)),
            key_sha256=_digest(key),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            registries=tuple(sorted(set(registries))),
        )
        self._write({**self._clients, name: client})
        return client, key

    def revoke(self, name: str) -> None:
        self._load()
        if name not in self._clients:
            raise ClientsFileError(f"no client named {name!r}")
        self._write({k: v for k, v in self._clients.items() if k != name})

    def _write(self, clients: dict[str, Client]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"clients": [asdict(c) for c in sorted(clients.values(), key=lambda c: c.name)]}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".clients-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(payload, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._load()


def _parse(path: Path) -> dict[str, Client]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        entries = payload["clients"]
        clients = {}
        for entry in entries:
            client = Client(
                name=str(entry["name"]),
                role=Role(entry["role"]),
                quota_per_second=float(entry["quota_per_second"]),
                burst=int(entry["burst"]),
                key_sha256=str(entry["key_sha256"]),
                created_at=str(entry["created_at"]),
                registries=tuple(str(t) for t in entry.get("registries", ())),
            )
            _check_registries(client.registries, client.role)
            if len(client.key_sha256) != 64:
                raise ValueError(f"client {client.name!r}: key_sha256 is not a SHA-256 digest")
            if client.quota_per_second <= 0 or client.burst < 1:
                raise ValueError(f"client {client.name!r}: quota and burst must be positive")
            clients[client.name] = client
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClientsFileError(f"{path}: not a valid clients file ({err})") from None
    return clients


def _check_registries(registries: tuple[str, ...], role: Role) -> None:
    unknown = sorted(set(registries) - set(REGISTRY_TABLES))
    if unknown:
        raise ClientsFileError(
            f"not registry tables: {', '.join(unknown)} (they are {', '.join(REGISTRY_TABLES)})"
        )
    if registries and role is not Role.REPORTER:
        raise ClientsFileError("only a reporter is granted registry tables")
