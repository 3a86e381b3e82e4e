"""The decision log: append-only, hash-chained, durable, with group commit.

Format
------
A log is a directory of segment files ``segment-000001.jsonl``, ``segment-000002.jsonl``,
... (numbered from 1 without gaps), a ``head.json`` file and a ``lock`` file. Each line of
a segment is one entry, ``\\n``-terminated::

    {"seq":N,"prev":"<64 hex>","hash":"<64 hex>","body":{...}}

``seq`` counts from 0 over the whole log; ``prev`` is the previous entry's ``hash`` (the
genesis entry's ``prev`` is ``"0" * 64``); ``body`` is the entry's canonical bytes:
``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` in UTF-8 (:func:`canonical_bytes`). A body holds at least
``decision_id`` (a string) and ``time`` (ISO 8601 with a zone, UTC by convention).

What is hashed, exactly::

    hash = sha256( prev as 64 ASCII hex digits
                   ‖ canonical_bytes({"seq": N, "body": body}) ).hexdigest()

i.e. ``entry_hash(prev, b'{"body":' + canonical_bytes(body) + b',"seq":N}')``, so the
sequence number is covered as well as the body and the link. A shell check of one line:
``printf '%s%s' "$prev" '{"body":<body as on the line>,"seq":N}' | sha256sum``.

Segments rotate before a line would take the current one past ``segment_bytes`` (a single
larger line gets a segment of its own); the first entry of a segment links to the last of
the one before, so the chain runs across segments. ``head.json`` is one fixed-size line
``{"seq":N,"hash":"...","check":"..."}`` (the last entry written, rewritten in place after
each batch; -1 and the genesis hash while empty).

Writing and durability
----------------------
Segments are opened ``O_APPEND``; the directory is fsynced when a segment (or the head
file) is created. One writer thread does all the writing (group commit): it takes
everything queued (up to ``max_batch`` entries), computes each entry's hash in order,
writes all the lines with one ``write()`` and, with ``fsync=True``, one ``fsync()``, and
only then wakes the appenders. With a ``commit_delay``, when the last group held more than
one entry (others are appending at the same time), the writer first waits, at most that
long, until as many entries are queued as the last group held: each commit's fixed cost
(system calls, the hand-over to the writer thread and back, and the answers going out
together) is then shared by more entries. A group that fills at once is not delayed (a
few callers each waiting for their answer before asking again are answered as soon as
they have all asked), nor is a lone appender (the last group held one entry); only a
group smaller than the last one waits out the delay.
So with ``fsync=True`` an acknowledged entry survives a
power loss (as far as the storage honours flushes); with ``fsync=False`` it survives the
process being killed, ``kill -9`` included, because ``write()`` had returned and the data
is in the kernel, but not a power loss or kernel crash. After a failed ``write`` or
``fsync`` the log accepts nothing more (the file's state is unknown; retrying an fsync
can report success for lost data): restart the process, which recovers.

The service never deletes or rewrites an entry; there is no API for it. The only write
other than appending is recovery cutting off a torn last line (see below).

Starting and recovery
---------------------
On start the last segment is read and checked entry by entry, with its link to the last
entry of the segment before and against the head file; the chain continues from its last
entry. An unfinished last line without a newline (a crash in the middle of ``write()``:
that entry was never acknowledged) is cut off with a warning logged. Anything else wrong
(a bad hash, a gap, a malformed line, a missing segment or head file, fewer entries than
the head file records) is :class:`ChainBrokenError` and the log does not start: a
regulator must look (``credit-risk audit verify``). The head file is rewritten only after
the entries it names were written (and fsynced), so a crash leaves it behind the log,
never ahead, except after a power loss with ``fsync=False`` that lost acknowledged
entries, which is then reported, not hidden. Only one process may have a log open
(an exclusive ``flock`` on ``lock``). Checking the whole chain is :func:`verify_log`'s job.

What verification detects, and what it cannot
---------------------------------------------
Detected and located (sequence, segment, line): a changed byte anywhere in a line (hash
mismatch, broken link, malformed line or sequence error, by where it falls); a deleted,
duplicated, swapped or inserted line (sequence gap / out of order, or broken link); a
forged entry whose ``prev`` is not the hash before it, or whose hash was not recomputed;
a segment truncated in the middle of a line, or at a line boundary when it is not the last
one, or emptied; a missing segment; entries cut off the end of the log (at a line
boundary, a whole last segment, or mid-line) as long as ``head.json`` still records the
later sequence; a missing or garbled head file.

Not detectable from the directory alone (the chain is not signed, so whoever can write the
files can write a consistent chain): rewriting an entry together with every entry after it
and the head file; appending correctly chained forged entries at the end (and updating the
head); truncating the end and rewriting the head to match. An unfinished last line is
indistinguishable from a crash and is allowed. Against these, record ``last_sequence`` and
``last_hash`` of a verification outside the log (a regulator's file, a ticket, a
timestamping service) and pass them to :func:`verify_log` as ``anchors`` later: any
rewrite before an anchor is then caught.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from audit.chain import (
    HEAD_FILE,
    LOCK_FILE,
    CanonicalBody,
    Head,
    LogEntry,
    Receipt,
    canonical_bytes,
    check_wanted,
    encode_head,
    encode_line,
    entry_hash,
    fsync_directory,
    hashed_bytes,
    list_segments,
    parse_line,
    parse_time,
    read_segment,
    segment_name,
)
from audit.recovery import ChainBrokenError, DecisionLogError, recover
from audit.verify import VerifyResult, verify_log

__all__ = [
    "ChainBrokenError",
    "DecisionLog",
    "DecisionLogError",
    "LogClosedError",
    "LogEntry",
    "LogStats",
    "PendingAppend",
    "Receipt",
    "VerifyResult",
    "canonical_bytes",
    "entry_hash",
    "find_decision",
    "verify_log",
]

logger = logging.getLogger(__name__)


class LogClosedError(DecisionLogError):
    """The log was closed (or failed) and takes no more entries."""


@dataclass(frozen=True)
class LogStats:
    """Counters since the log was opened."""

    entries: int
    batches: int
    fsyncs: int
    largest_batch: int


@dataclass
class _Request:
    bodies: list[bytes]
    receipts: list[Receipt] | None = None
    error: BaseException | None = None
    done: bool = field(default=False)
    # Held from creation until the writer is done with the request: a waiter blocks on
    # the lock itself, so a commit wakes exactly its own waiters, in C (a Condition's
    # notify_all woke every waiting call thread for each group commit).
    finished: Any = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.finished.acquire()

    def finish(self) -> None:
        """Mark done (under the log's lock)."""
        self.done = True
        self.finished.release()


class PendingAppend:
    """An entry queued by :meth:`DecisionLog.submit`."""

    def __init__(self, log: DecisionLog, request: _Request) -> None:
        self._log = log
        self._request = request

    def done(self) -> bool:
        """Whether the entry is durable (or its write failed): ``result`` will not wait."""
        return self._request.done

    def result(self) -> Receipt:
        """Wait until the entry is durable; its receipt (or the write's error)."""
        return self._log._wait([self._request])[0]


class DecisionLog:
    """An open decision log directory; thread-safe; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = 64 << 20,
        fsync: bool = True,
        max_batch: int = 4096,
        commit_delay: float = 0.0,
    ) -> None:
        if commit_delay < 0:
            raise ValueError("commit_delay must not be negative")
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        self._directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._max_batch = max_batch
        self._commit_delay = commit_delay
        self._last_batch = 0  # entries in the last group commit
        self._queued = 0  # entries in the queue
        self._wanted = 1  # queued entries that wake the writer (more while a group fills)
        self._listeners: tuple[Callable[[], None], ...] = ()
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[_Request] = deque()
        self._closing = False
        self._closed = False
        self._failure: BaseException | None = None
        self._entries = self._batches = self._fsyncs = self._largest = 0
        self.torn_tail_bytes = 0
        """Bytes of an unfinished last line cut off when this log was opened."""

        if not self._directory.is_dir():
            self._directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(self._directory.parent)
        self._lock_fd = os.open(self._directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DecisionLogError(
                    f"decision log {self._directory} is already open (in this or another process)"
                ) from None
            state = recover(self._directory, fsync=fsync)
            self.torn_tail_bytes = state.torn_tail_bytes
            self._next_sequence = self._committed = state.next_sequence
            self._previous_hash = state.previous_hash
            self._segment_number = state.segment_number
            self._segment_size = state.segment_size
            path = self._directory / segment_name(state.segment_number)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._head_fd = os.open(self._directory / HEAD_FILE, os.O_RDWR)
            self._write_head(durable=True)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._thread = threading.Thread(
            target=self._run, name=f"decision-log-writer:{self._directory.name}", daemon=True
        )
        self._thread.start()

    # -- appending -----------------------------------------------------------------------

    def append(self, entry: Mapping[str, Any] | CanonicalBody) -> Receipt:
        """Append one entry; returns once it is written (and fsynced with fsync=True).
        ``ValueError``/``TypeError`` for a body that cannot be logged (nothing is written)."""
        return self.submit(entry).result()

    def submit(self, entry: Mapping[str, Any] | CanonicalBody) -> PendingAppend:
        """Queue one entry and return at once; :meth:`PendingAppend.result` waits until it
        is durable (:meth:`PendingAppend.done` says whether it is; a commit listener hears
        when it may have become so). For a caller with many decisions in flight (a stream,
        an event loop), so that they share group commits instead of each waiting for its
        own."""
        request = _Request([_body_bytes(entry)])
        self._enqueue([request])
        return PendingAppend(self, request)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` on the writer thread after each group commit, once the
        entries it held are done (durable, or failed): so it must be quick and must not
        raise (an event loop's ``call_soon_threadsafe`` is). One call per commit, not per
        entry: a waiter for many entries checks which are done."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def append_many(self, entries: Sequence[Mapping[str, Any] | CanonicalBody]) -> list[Receipt]:
        """Append entries with consecutive sequence numbers. If a write fails part of the
        way, the entries before the failure may be in the log."""
        bodies = [_body_bytes(entry) for entry in entries]
        step = self._max_batch
        requests = [_Request(bodies[i : i + step]) for i in range(0, len(bodies), step)]
        if not requests:
            return []
        self._enqueue(requests)
        return self._wait(requests)

    def _enqueue(self, requests: list[_Request]) -> None:
        with self._lock:
            if self._failure is not None:
                raise LogClosedError(
                    f"decision log {self._directory} failed earlier and takes no more entries: "
                    f"{self._failure!r}"
                )
            if self._closing:
                raise LogClosedError(f"decision log {self._directory} is closed")
            self._queue.extend(requests)
            self._queued += sum(len(request.bodies) for request in requests)
            if self._queued >= self._wanted:
                self._work.notify()

    def _wait(self, requests: list[_Request]) -> list[Receipt]:
        last = requests[-1]  # one writer, in queue order: the last done means all done
        if not last.done:
            with last.finished:  # released by the writer; released again for other waiters
                pass
        receipts: list[Receipt] = []
        for request in requests:
            if request.error is not None:
                raise DecisionLogError(
                    f"decision log {self._directory}: write failed: {request.error!r}"
                ) from request.error
            assert request.receipts is not None
            receipts.extend(request.receipts)
        return receipts

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._work.wait()
                target = self._last_batch if self._commit_delay > 0 else 0
                if target > 1 and self._queued < target:
                    # Others were committing together: let the group fill up first.
                    self._wanted = target
                    deadline = time.monotonic() + self._commit_delay
                    while self._queued < target and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._work.wait(remaining)
                    self._wanted = 1
                if not self._queue:
                    return
                batch = [self._queue.popleft()]
                count = len(batch[0].bodies)
                while self._queue and count + len(self._queue[0].bodies) <= self._max_batch:
                    count += len(self._queue[0].bodies)
                    batch.append(self._queue.popleft())
                self._queued -= count
                failure = self._failure
            if failure is None:
                try:
                    receipts = self._commit(batch)
                except BaseException as exc:  # the files' state is unknown now
                    logger.exception("decision log %s: write failed", self._directory)
                    failure = exc
            with self._lock:
                if failure is not None:
                    self._failure = failure
                    for request in batch:
                        request.error = failure
                        request.finish()
                else:
                    for request, got in zip(batch, receipts, strict=True):
                        request.receipts = got
                        request.finish()
                    self._committed = self._next_sequence
                    self._entries += count
                    self._batches += 1
                    self._largest = max(self._largest, count)
                    self._last_batch = count
            for listener in self._listeners:
                try:
                    listener()
                except Exception:  # a listener's fault must not stop the log
                    logger.exception("decision log %s: a commit listener failed", self._directory)
            if failure is None:
                try:
                    self._write_head(durable=False)
                except OSError as exc:
                    logger.exception("decision log %s: head file write failed", self._directory)
                    with self._lock:
                        self._failure = exc

    def _commit(self, batch: list[_Request]) -> list[list[Receipt]]:
        sequence, previous = self._next_sequence, self._previous_hash
        pending: list[bytes] = []
        size = self._segment_size
        receipts: list[list[Receipt]] = []
        for request in batch:
            got = []
            for body in request.bodies:
                digest = entry_hash(previous, hashed_bytes(sequence, body))
                line = encode_line(sequence, previous, digest, body)
                if size > 0 and size + len(line) > self._segment_bytes:
                    self._flush(pending)
                    pending = []
                    self._rotate()
                    size = 0
                pending.append(line)
                size += len(line)
                got.append(Receipt(sequence, digest))
                previous = digest
                sequence += 1
            receipts.append(got)
        self._flush(pending)
        self._next_sequence, self._previous_hash = sequence, previous
        return receipts

    def _flush(self, lines: list[bytes]) -> None:
        if not lines:
            return
        joined = b"".join(lines)
        data = memoryview(joined)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]
        self._segment_size += len(joined)
        if self._fsync:
            os.fsync(self._fd)
            self._fsyncs += 1

    def _rotate(self) -> None:
        number = self._segment_number + 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        fd = os.open(self._directory / segment_name(number), flags, 0o644)
        fsync_directory(self._directory)
        os.close(self._fd)
        self._fd, self._segment_number, self._segment_size = fd, number, 0

    def _write_head(self, *, durable: bool) -> None:
        head = Head(self._next_sequence - 1, self._previous_hash)
        os.pwrite(self._head_fd, encode_head(head), 0)
        if durable and self._fsync:
            os.fsync(self._head_fd)

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, then close the files; later appends raise."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already, self._closing = False, True
                self._work.notify_all()
        if already:
            self._thread.join()
            return
        self._thread.join()
        try:
            if self._failure is None:
                self._write_head(durable=True)
        finally:
            for fd in (self._fd, self._head_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
            os.close(self._lock_fd)  # releases the flock
            self._closed = True

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def next_sequence(self) -> int:
        """The sequence the next entry will get (= entries acknowledged so far)."""
        with self._lock:
            return self._committed

    def stats(self) -> LogStats:
        with self._lock:
            return LogStats(self._entries, self._batches, self._fsyncs, self._largest)

    def entries(
        self, from_sequence: int = 0, *, wanted: Callable[[], bool] | None = None
    ) -> Iterator[LogEntry]:
        """The acknowledged entries from ``from_sequence`` on, in order, as of the call.
        Lines are parsed but hashes are not checked (that is :func:`verify_log`).
        ``wanted`` is asked every few thousand lines read; once it says no the scan stops
        with :class:`audit.chain.ScanAbandoned`."""
        limit = self.next_sequence
        segments = list_segments(self._directory)
        start = 0
        for index in range(len(segments) - 1, -1, -1):  # the segment holding from_sequence
            first = _first_sequence(segments[index][1])
            if first is not None and first <= from_sequence:
                start = index
                break
        scanned = 0
        for number, path in segments[start:]:
            name = segment_name(number)
            for line, raw, complete in read_segment(path):
                if not complete:
                    break
                scanned += 1
                check_wanted(scanned, wanted)
                entry = parse_line(raw, name, line)
                if entry is None:
                    raise DecisionLogError(f"malformed line in {name}, line {line}")
                if entry.sequence >= limit:
                    return
                if entry.sequence >= from_sequence:
                    yield entry

    def get(self, decision_id: str) -> LogEntry | None:
        """The entry of a decision, or None (see :func:`find_decision`)."""
        return find_decision(self._directory, decision_id)


def find_decision(directory: Path, decision_id: str) -> LogEntry | None:
    """The entry of a decision in a log directory, open or not (nothing is locked or
    written): a scan, newest segment first, of the bytes for ``"decision_id":"..."``; only
    matching complete lines are parsed, and hashes are not checked (that is
    :func:`verify_log`)."""
    needle = b'"decision_id":' + canonical_bytes({"": decision_id})[4:-1]
    for number, path in reversed(list_segments(directory)):
        data = path.read_bytes()
        position = data.find(needle)
        while position >= 0:
            begin = data.rfind(b"\n", 0, position) + 1
            end = data.find(b"\n", position)
            if end >= 0:
                line = data.count(b"\n", 0, begin) + 1
                entry = parse_line(data[begin:end], segment_name(number), line)
                if entry is not None and entry.body.get("decision_id") == decision_id:
                    return entry
            position = data.find(needle, position + 1)
    return None


def _first_sequence(path: Path) -> int | None:
    with path.open("rb") as handle:
        raw = handle.readline()
    if not raw.endswith(b"\n"):
        return None
    entry = parse_line(raw[:-1], path.name, 1)
    return entry.sequence if entry is not None else None


def _body_bytes(entry: Mapping[str, Any] | CanonicalBody) -> bytes:
    if isinstance(entry, CanonicalBody):
        return entry.data
    if not isinstance(entry, Mapping):
        raise TypeError(f"a log entry is a mapping, not {type(entry).__name__}")
    decision = entry.get("decision_id")
    if not isinstance(decision, str) or not decision:
        raise ValueError("a log entry needs a non-empty string decision_id")
    if parse_time(entry.get("time")) is None:
        raise ValueError("a log entry needs a time: ISO 8601 with a zone (UTC)")
    return canonical_bytes(entry)
