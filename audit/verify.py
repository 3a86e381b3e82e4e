"""Verification of a decision log directory: walk every segment from the genesis entry,
check each entry's sequence, link and hash, and report the first break, located.

See :mod:`audit.log` for the format and for what is and is not detectable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from audit.chain import (
    ChainBreakError,
    ChainCursor,
    HeadError,
    as_utc,
    check_wanted,
    list_segments,
    parse_time,
    read_head,
    read_segment,
    segment_name,
)

__all__ = ["VerifyResult", "verify_log"]


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_log`.

    ``entries`` counts the verified entries whose time is in the requested range (all of
    them without a range; up to the break when not ok). ``first_bad_sequence``, ``segment``
    and ``line`` (from 1) locate the first break; ``reason`` says what is wrong in plain
    words. ``last_sequence`` and ``last_hash`` are the last verified entry (record them
    outside the log and pass them back as an anchor later: see :func:`verify_log`);
    ``torn_tail_bytes`` is the size of an unfinished last line left by a crash (allowed).
    """

    ok: bool
    entries: int
    first_bad_sequence: int | None
    segment: str | None
    line: int | None
    reason: str | None
    last_sequence: int | None = None
    last_hash: str | None = None
    torn_tail_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_log(
    directory: Path,
    *,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    anchors: Mapping[int, str] | None = None,
    wanted: Callable[[], bool] | None = None,
) -> VerifyResult:
    """Verify the whole chain in ``directory``.

    The walk always starts at the genesis entry (an entry's previous hash is only known by
    reading the one before) and always reads to the end (a range is protected by the links
    after it, up to the head file). ``from_time`` (inclusive) and ``to_time`` (exclusive),
    compared with each body's ``time`` (naive = UTC), only limit which entries are counted:
    a break anywhere makes the result not ok. ``anchors`` maps sequences to hashes recorded
    outside the log earlier (e.g. a previous result's last_sequence/last_hash): each must
    still be in the chain, which catches a rewrite of everything up to the end.
    ``wanted`` is asked every few thousand lines (a whole log can take minutes); once it
    returns False the walk stops with :class:`audit.chain.ScanAbandoned`.
    """
    start = as_utc(from_time) if from_time is not None else None
    end = as_utc(to_time) if to_time is not None else None
    pinned = dict(anchors or {})
    counted = 0
    cursor = ChainCursor()
    last_hash: str | None = None

    def result(
        ok: bool,
        sequence: int | None = None,
        segment: str | None = None,
        line: int | None = None,
        reason: str | None = None,
        torn: int = 0,
    ) -> VerifyResult:
        last = cursor.next_sequence - 1
        return VerifyResult(
            ok, counted, sequence, segment, line, reason,
            last if last >= 0 else None, last_hash, torn,
        )  # fmt: skip

    directory = Path(directory)
    if not directory.is_dir():
        return result(False, reason=f"log directory missing ({directory})")
    try:
        head = read_head(directory)  # before the segments: a writer moves it only forward
    except HeadError as err:
        head = None
        head_problem = str(err)
    segments = list_segments(directory)
    if head is None:
        if not segments and head_problem == "head file missing":
            return result(True)  # nothing was ever written
        return result(False, 0, None, None, head_problem)

    if not segments and head.sequence >= 0:
        return result(False, 0, segment_name(1), None, "segment missing")
    torn = 0
    last_name = segment_name(1)
    last_lines = 0
    for index, (number, path) in enumerate(segments):
        name = segment_name(index + 1)
        if number != index + 1:
            return result(False, cursor.next_sequence, name, None, "segment missing")
        is_last = index == len(segments) - 1
        tail = b""  # after the last newline: b"" unless a line is unfinished
        count = 0
        for line, raw, complete in read_segment(path):
            if not complete:
                tail = raw
                break
            count = line
            check_wanted(cursor.next_sequence, wanted)
            try:
                entry = cursor.step(raw, name, line)
            except ChainBreakError as brk:
                return result(False, brk.sequence, brk.segment, brk.line, brk.reason)
            moment = parse_time(entry.body["time"])
            if moment is None:
                cursor.next_sequence -= 1
                return result(
                    False, entry.sequence, name, line,
                    "malformed line (time is not ISO 8601 with a zone)",
                )  # fmt: skip
            last_hash = entry.hash
            if (start is None or moment >= start) and (end is None or moment < end):
                counted += 1
            pinned_hash = pinned.pop(entry.sequence, None)
            if pinned_hash is not None and pinned_hash != entry.hash:
                return result(False, entry.sequence, name, line, "hash does not match the anchor")
            if entry.sequence == head.sequence and entry.hash != head.hash:
                return result(
                    False, entry.sequence, name, line, "hash does not match the head file"
                )
        if not is_last and (tail or not count):
            line = count + 1
            return result(False, cursor.next_sequence, name, line, "truncated segment")
        torn = len(tail)
        last_name, last_lines = name, count

    if head.sequence >= cursor.next_sequence:
        return result(
            False,
            cursor.next_sequence,
            last_name,
            last_lines + 1,
            f"truncated segment (the log ends at sequence {cursor.next_sequence - 1}, "
            f"the head file records {head.sequence})",
        )
    if pinned:
        missing = min(pinned)
        return result(
            False, missing, last_name, None, f"anchored sequence {missing} is past the end"
        )
    return result(True, torn=torn)
