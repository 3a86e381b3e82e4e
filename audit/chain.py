"""The decision log's on-disk format: canonical bytes, the hash chain, lines, segments and
the head file. The format is described in full in :mod:`audit.log`; this module holds the
pieces that the writer (:class:`audit.log.DecisionLog`) and the verifier
(:func:`audit.verify.verify_log`) share, so both read a line the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "HEAD_FILE",
    "CanonicalBody",
    "ChainBreakError",
    "ChainCursor",
    "Head",
    "HeadError",
    "LogEntry",
    "Receipt",
    "ScanAbandoned",
    "canonical_bytes",
    "check_wanted",
    "encode_head",
    "encode_line",
    "entry_hash",
    "hashed_bytes",
    "list_segments",
    "parse_time",
    "read_head",
    "read_segment",
    "segment_name",
]

GENESIS_HASH = "0" * 64
HEAD_FILE = "head.json"
LOCK_FILE = "lock"
HEAD_BYTES = 128

_SEGMENT = re.compile(r"^segment-([0-9]{6,})\.jsonl$")
_LINE = re.compile(
    rb'\{"seq":(0|[1-9][0-9]*),"prev":"([0-9a-f]{64})","hash":"([0-9a-f]{64})",'
    rb'"body":(\{.*\})\}\Z',
    re.DOTALL,
)


@dataclass(frozen=True)
class Receipt:
    """What an appender gets back once its entry is durable: its place in the chain."""

    sequence: int
    hash: str


@dataclass(frozen=True)
class LogEntry:
    """One entry read back from the log; ``line`` counts from 1 within ``segment``."""

    sequence: int
    previous_hash: str
    hash: str
    body: dict[str, Any]
    segment: str
    line: int


@dataclass(frozen=True)
class CanonicalBody:
    """An entry body already in its canonical bytes, made by an encoder proven to give
    ``canonical_bytes`` of the same entry (:func:`audit.entries.decision_entry_bytes`): the
    log appends it as it is, instead of encoding a mapping."""

    data: bytes


def canonical_bytes(body: Mapping[str, Any]) -> bytes:
    """The one byte form of an entry body: sorted keys, no spaces, UTF-8, no NaN/Infinity
    (``ValueError``); equal bodies give equal bytes whatever their key order."""
    value = body if isinstance(body, dict) else dict(body)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def entry_hash(previous_hash: str, body_bytes: bytes) -> str:
    """sha256 over the previous entry's hash (its 64 hex digits, as ASCII) followed by
    ``body_bytes``; hex digest."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(body_bytes)
    return digest.hexdigest()


def hashed_bytes(sequence: int, body_bytes: bytes) -> bytes:
    """``canonical_bytes({"seq": sequence, "body": body})``, built from the body's canonical
    bytes without encoding the body again: what an entry's hash covers after the previous
    hash."""
    return b'{"body":' + body_bytes + b',"seq":%d}' % sequence


def encode_line(sequence: int, previous_hash: str, digest: str, body_bytes: bytes) -> bytes:
    """One log line, newline included; the body is embedded as its canonical bytes."""
    return b'{"seq":%d,"prev":"%s","hash":"%s","body":%s}\n' % (
        sequence,
        previous_hash.encode("ascii"),
        digest.encode("ascii"),
        body_bytes,
    )


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 time with a zone, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def as_utc(moment: datetime) -> datetime:
    """A naive datetime is taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class ChainBreakError(Exception):
    """Where and why the chain is broken."""

    def __init__(self, sequence: int | None, segment: str | None, line: int | None, reason: str):
        super().__init__(f"{reason} at sequence {sequence} ({segment}, line {line})")
        self.sequence = sequence
        self.segment = segment
        self.line = line
        self.reason = reason


class ChainCursor:
    """Walks lines in chain order and checks each against the one before."""

    def __init__(self, next_sequence: int = 0, previous_hash: str = GENESIS_HASH) -> None:
        self.next_sequence = next_sequence
        self.previous_hash = previous_hash

    def step(self, raw: bytes, segment: str, line: int) -> LogEntry:
        """The entry on ``raw`` (a line without its newline); ``ChainBreakError`` if it does not
        continue the chain."""
        expected = self.next_sequence
        match = _LINE.match(raw)
        if match is None:
            raise ChainBreakError(expected, segment, line, "malformed line")
        sequence = int(match[1])
        previous = match[2].decode("ascii")
        digest = match[3].decode("ascii")
        body_bytes = match[4]
        if sequence != expected:
            kind = "sequence gap" if sequence > expected else "sequence out of order"
            raise ChainBreakError(
                expected, segment, line, f"{kind} (expected {expected}, found {sequence})"
            )
        if previous != self.previous_hash:
            raise ChainBreakError(
                sequence, segment, line, "previous hash does not match the entry before"
            )
        if entry_hash(previous, hashed_bytes(sequence, body_bytes)) != digest:
            raise ChainBreakError(sequence, segment, line, "hash mismatch")
        body = decode_body(body_bytes)
        if body is None:
            raise ChainBreakError(
                sequence, segment, line, "malformed line (body without decision_id and time)"
            )
        self.next_sequence = sequence + 1
        self.previous_hash = digest
        return LogEntry(sequence, previous, digest, body, segment, line)


def decode_body(body_bytes: bytes) -> dict[str, Any] | None:
    """The body, if it is a JSON object with string ``decision_id`` and ``time``."""
    try:
        body = json.loads(body_bytes)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if not isinstance(body.get("decision_id"), str) or not isinstance(body.get("time"), str):
        return None
    return body


def parse_line(raw: bytes, segment: str, line: int) -> LogEntry | None:
    """The entry on a line, without checking its place in the chain; None if malformed."""
    match = _LINE.match(raw)
    if match is None:
        return None
    body = decode_body(match[4])
    if body is None:
        return None
    return LogEntry(
        int(match[1]), match[2].decode("ascii"), match[3].decode("ascii"), body, segment, line
    )


def self_consistent(raw: bytes) -> bool:
    """Whether a line's hash matches its own content (its link to the line before aside)."""
    match = _LINE.match(raw)
    if match is None:
        return False
    previous = match[2].decode("ascii")
    return entry_hash(previous, hashed_bytes(int(match[1]), match[4])) == match[3].decode()


def segment_name(number: int) -> str:
    return f"segment-{number:06d}.jsonl"


_ASK_EVERY = 4_096  # lines a scan reads between two asks whether it is still wanted


class ScanAbandoned(Exception):  # noqa: N818 - what happened, not an error
    """A scan of the log stopped because whoever asked for it no longer wants the answer."""


def check_wanted(scanned: int, wanted: Callable[[], bool] | None) -> None:
    """Every few thousand lines a scan has read, ask ``wanted`` (a whole log takes minutes
    to read); raise :class:`ScanAbandoned` once it says no."""
    if wanted is not None and scanned and scanned % _ASK_EVERY == 0 and not wanted():
        raise ScanAbandoned(f"stopped after {scanned} entries")


def read_segment(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """A segment's lines as ``(line number from 1, bytes without the newline, complete)``,
    read a buffer at a time: only the last can be incomplete (an unfinished append). Whole
    segments read and split at once left a scan's tens of thousands of small line objects
    to the allocator of whichever server thread ran it (RSS grew by each such scan)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if raw.endswith(b"\n"):
                yield number, raw[:-1], True
            else:
                yield number, raw, False


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files in ``directory``, by number; other files are ignored."""
    found = []
    for path in directory.iterdir():
        match = _SEGMENT.match(path.name)
        if match is not None and path.is_file():
            found.append((int(match[1]), path))
    return sorted(found)


# -- the head file ----------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The last entry the writer completed: -1 and the genesis hash for an empty log."""

    sequence: int
    hash: str


class HeadError(Exception):
    """The head file is missing or unreadable."""


def _head_check(sequence: int, digest: str) -> str:
    return hashlib.sha256(b"%d:%s" % (sequence, digest.encode("ascii"))).hexdigest()[:16]


def encode_head(head: Head) -> bytes:
    """The head file's content: one JSON line, padded to a fixed length so it can be
    rewritten in place with one ``pwrite``, with a check value so a reader racing a write
    (or a torn write) is noticed."""
    text = json.dumps(
        {"seq": head.sequence, "hash": head.hash, "check": _head_check(head.sequence, head.hash)},
        separators=(",", ":"),
    ).encode("ascii")
    return text.ljust(HEAD_BYTES - 1) + b"\n"


def read_head(directory: Path, *, attempts: int = 20) -> Head:
    """The head file's content; ``HeadError`` if it is missing or stays unreadable."""
    path = directory / HEAD_FILE
    for attempt in range(attempts):
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise HeadError("head file missing") from None
        try:
            value = json.loads(raw)
            sequence, digest, check = value["seq"], value["hash"], value["check"]
            if (
                isinstance(sequence, int)
                and isinstance(digest, str)
                and re.fullmatch("[0-9a-f]{64}", digest)
                and check == _head_check(sequence, digest)
            ):
                return Head(sequence, digest)
        except (ValueError, KeyError, TypeError):
            pass
        if attempt + 1 < attempts:
            time.sleep(0.001)  # a writer may be rewriting it this instant
    raise HeadError("head file malformed")


def fsync_directory(directory: Path) -> None:
    """Make a file's creation (or removal) in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
