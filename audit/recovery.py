"""Opening a decision log directory: find where the chain continues, cut off a torn last
line left by a crash, refuse anything else that is wrong (see :mod:`audit.log`).

Only the last segment is checked entry by entry (with its link to the last entry of the
segment before, and against the head file): opening stays fast however long the log is.
The whole chain is :func:`audit.verify.verify_log`'s.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from audit.chain import (
    GENESIS_HASH,
    HEAD_FILE,
    ChainBreakError,
    ChainCursor,
    Head,
    HeadError,
    encode_head,
    fsync_directory,
    list_segments,
    parse_line,
    read_head,
    segment_name,
    self_consistent,
)

__all__ = ["ChainBrokenError", "DecisionLogError", "Recovered", "recover"]

logger = logging.getLogger("audit.log")


class DecisionLogError(RuntimeError):
    """The decision log cannot do what was asked."""


class LogClosedError(DecisionLogError):
    """The log was closed (or failed) and takes no more entries."""


class ChainBrokenError(DecisionLogError):
    """The log on disk is not an intact chain; it will not be appended to."""

    def __init__(self, sequence: int | None, segment: str | None, line: int | None, reason: str):
        where = f"{segment}, line {line}" if line is not None else f"{segment}"
        super().__init__(
            f"decision log broken at sequence {sequence} ({where}): {reason}; it was not "
            "opened for writing, a regulator must look (credit-risk audit verify)"
        )
        self.sequence = sequence
        self.segment = segment
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Recovered:
    """Where appending continues: the next entry's sequence and previous hash, the last
    segment's number and intact size, and the bytes of a torn last line cut off."""

    next_sequence: int
    previous_hash: str
    segment_number: int
    segment_size: int
    torn_tail_bytes: int


def recover(directory: Path, *, fsync: bool) -> Recovered:
    """Check the end of the log in ``directory`` (an existing directory the caller holds
    the lock of), creating an empty log if there is none; ``ChainBrokenError`` if it is
    broken other than by a torn last line."""
    segments = list_segments(directory)
    head_path = directory / HEAD_FILE
    if [(n, p.stat().st_size) for n, p in segments] == [(1, 0)] and not head_path.exists():
        segments[0][1].unlink()  # a crash while the log was being created: still empty
        segments = []
    if not segments:
        if head_path.exists():
            head = _head_or_break(directory)
            if head.sequence >= 0:
                raise ChainBrokenError(0, segment_name(1), None, "segment missing")
            head_path.unlink()
        return _start_fresh(directory, fsync=fsync)
    for index, (number, _) in enumerate(segments):
        if number != index + 1:
            raise ChainBrokenError(None, segment_name(index + 1), None, "segment missing")
    head = _head_or_break(directory)

    cursor = ChainCursor()
    if len(segments) > 1:
        previous_name = segment_name(len(segments) - 1)
        data = segments[-2][1].read_bytes()
        lines = data.split(b"\n")
        if lines.pop() or not lines:
            raise ChainBrokenError(None, previous_name, len(lines) + 1, "truncated segment")
        last = parse_line(lines[-1], previous_name, len(lines))
        if last is None or not self_consistent(lines[-1]):
            reason = "malformed line" if last is None else "hash mismatch"
            raise ChainBrokenError(None, previous_name, len(lines), reason)
        cursor = ChainCursor(last.sequence + 1, last.hash)

    number, path = segments[-1]
    name = segment_name(number)
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()
    for line, raw in enumerate(lines, 1):
        try:
            entry = cursor.step(raw, name, line)
        except ChainBreakError as brk:
            raise ChainBrokenError(brk.sequence, brk.segment, brk.line, brk.reason) from None
        if entry.sequence == head.sequence and entry.hash != head.hash:
            raise ChainBrokenError(entry.sequence, name, line, "hash does not match the head file")
    if head.sequence >= cursor.next_sequence:
        raise ChainBrokenError(
            cursor.next_sequence,
            name,
            len(lines) + 1,
            f"truncated segment (the log ends at sequence {cursor.next_sequence - 1}, "
            f"the head file records {head.sequence})",
        )
    size = len(data)
    if tail:
        size -= len(tail)
        logger.warning(
            "decision log %s: cut off an unfinished last line in %s (%d bytes without a "
            "newline, left by a crash; never acknowledged); the chain continues after "
            "sequence %d",
            directory,
            name,
            len(tail),
            cursor.next_sequence - 1,
        )
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)
    return Recovered(cursor.next_sequence, cursor.previous_hash, number, size, len(tail))


def _head_or_break(directory: Path) -> Head:
    try:
        return read_head(directory, attempts=1)
    except HeadError as err:
        raise ChainBrokenError(None, HEAD_FILE, None, str(err)) from None


def _start_fresh(directory: Path, *, fsync: bool) -> Recovered:
    # the head file first, durably: a segment never exists without it
    fd = os.open(directory / HEAD_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, encode_head(Head(-1, GENESIS_HASH)))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(directory)
    os.close(os.open(directory / segment_name(1), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    fsync_directory(directory)
    return Recovered(0, GENESIS_HASH, 1, 0, 0)
