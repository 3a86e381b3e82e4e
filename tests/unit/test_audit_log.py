"""The decision log's storage core: format, chain, rotation, group commit, recovery, and
verification that catches and locates each kind of tampering."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from audit.chain import Head as ChainHead
from audit.chain import ScanAbandoned, encode_head, encode_line, hashed_bytes, segment_name
from audit.log import (
    ChainBrokenError,
    DecisionLog,
    DecisionLogError,
    LogClosedError,
    Receipt,
    VerifyResult,
    canonical_bytes,
    entry_hash,
    verify_log,
)

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def body(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "decision_id": f"D{n:06d}",
        "time": (T0 + timedelta(seconds=n)).isoformat(),
        "score": 600 + n % 50,
        "pd": 0.0125 + n / 1e6,
        "reasons": [{"code": "R01", "contribution": -0.25}],
        "subject": f"subject-{n}-名",
        **extra,
    }


def fill(directory: Path, n: int, **options: Any) -> list[Receipt]:
    with DecisionLog(directory, fsync=False, **options) as log:
        return [log.append(body(i)) for i in range(n)]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def where(result: VerifyResult) -> tuple[bool, int | None, str | None, int | None]:
    return result.ok, result.first_bad_sequence, result.segment, result.line


# -- format and round trip ----------------------------------------------------------------


def test_round_trip_and_exact_format(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    bodies = [body(i, nested={"b": [1, 2.5, None, True], "a": "x"}) for i in range(5)]
    with DecisionLog(log_dir) as log:
        receipts = [log.append(b) for b in bodies]
        got = list(log.entries())
        assert log.get("D000003") == got[3]
        assert log.get("D999999") is None
    assert [r.sequence for r in receipts] == [0, 1, 2, 3, 4]
    assert [e.body for e in got] == bodies
    previous = "0" * 64
    for entry, receipt, raw in zip(got, receipts, lines_of(log_dir / segment_name(1)), strict=True):
        hashed = canonical_bytes({"seq": entry.sequence, "body": entry.body})
        assert hashed == hashed_bytes(entry.sequence, canonical_bytes(entry.body))
        expected = hashlib.sha256(previous.encode() + hashed).hexdigest()
        assert entry.hash == receipt.hash == expected == entry_hash(previous, hashed)
        assert entry.previous_hash == previous
        assert json.loads(raw) == {
            "seq": entry.sequence,
            "prev": previous,
            "hash": expected,
            "body": entry.body,
        }
        assert (
            raw == encode_line(entry.sequence, previous, expected, canonical_bytes(entry.body))[:-1]
        )
        previous = expected
    assert (got[3].segment, got[3].line) == (segment_name(1), 4)
    assert verify_log(log_dir) == VerifyResult(True, 5, None, None, None, None, 4, previous, 0)


def test_bodies_that_cannot_be_logged_write_nothing(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "audit") as log:
        with pytest.raises(ValueError):
            log.append(body(0, pd=float("nan")))
        with pytest.raises(ValueError, match="decision_id"):
            log.append({"time": T0.isoformat()})
        with pytest.raises(ValueError, match="time"):
            log.append({"decision_id": "X", "time": "2026-11-26T09:00:00"})  # no zone
        with pytest.raises(TypeError):
            log.append(["not", "a", "mapping"])  # type: ignore[arg-type]
        assert log.append(body(1)).sequence == 0
        assert log.append_many([]) == []


def test_append_many_is_contiguous_and_split_at_max_batch(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "audit", fsync=False, max_batch=7) as log:
        log.append(body(0))
        receipts = log.append_many([body(i) for i in range(1, 31)])
        assert [r.sequence for r in receipts] == list(range(1, 31))
        assert log.stats().largest_batch <= 7
    assert verify_log(tmp_path / "audit").entries == 31


def test_rotation_keeps_the_chain_across_small_segments(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    receipts = fill(log_dir, 40, segment_bytes=900)
    segments = sorted(log_dir.glob("segment-*.jsonl"))
    assert len(segments) >= 8
    for earlier, later in itertools.pairwise(segments):
        assert earlier.stat().st_size <= 900
        last = json.loads(lines_of(earlier)[-1])
        first = json.loads(lines_of(later)[0])
        assert first["prev"] == last["hash"] and first["seq"] == last["seq"] + 1
    assert verify_log(log_dir).ok
    with DecisionLog(log_dir, segment_bytes=900) as log:
        tail = list(log.entries(from_sequence=25))
        assert [e.sequence for e in tail] == list(range(25, 40))
        assert tail[-1].hash == receipts[-1].hash
        assert log.get("D000001") is not None and log.get("D000039") is not None


def test_a_line_longer_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    with DecisionLog(log_dir, fsync=False, segment_bytes=200) as log:
        log.append(body(0))
        log.append(body(1, padding="x" * 500))
        log.append(body(2))
    assert [len(lines_of(p)) for p in sorted(log_dir.glob("segment-*.jsonl"))] == [1, 1, 1]
    assert verify_log(log_dir).ok


# -- group commit -------------------------------------------------------------------------


def test_concurrent_appends_are_group_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log_dir = tmp_path / "audit"
    log = DecisionLog(log_dir)
    calls = 0
    receipts: list[list[Receipt]] = [[] for _ in range(8)]

    def worker(k: int) -> None:
        for i in range(500):
            receipts[k].append(log.append(body(k * 1000 + i, thread=k)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = log.stats()
    log.close()

    sequences = sorted(r.sequence for got in receipts for r in got)
    assert sequences == list(range(4000))
    for got in receipts:  # each thread's own appends are in its order
        assert [r.sequence for r in got] == sorted(r.sequence for r in got)
    result = verify_log(log_dir)
    assert result.ok and result.entries == 4000
    assert stats.entries == 4000 and stats.largest_batch > 1
    assert stats.fsyncs == stats.batches < 1500  # one fsync per batch, not per entry
    assert stats.batches <= calls < 1500  # at os.fsync itself: + a few head/dir ones


def test_commit_listeners_hear_each_commit_once_its_entries_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an event loop waits on: after each group commit the writer calls the commit
    listeners, once the entries are done (the fsync returned: never before), and after a
    failed write too (result() then raises)."""
    log = DecisionLog(tmp_path / "audit")
    fsynced = threading.Event()
    release = threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        release.wait(10)
        real_fsync(fd)
        fsynced.set()

    monkeypatch.setattr(os, "fsync", slow_fsync)
    pending = log.submit(body(0))
    called: list[tuple[bool, bool, str]] = []
    log.add_commit_listener(
        lambda: called.append((fsynced.is_set(), pending.done(), threading.current_thread().name))
    )
    assert not pending.done() and called == []  # the fsync has not returned
    release.set()
    receipt = pending.result()
    deadline = time.monotonic() + 10
    while not called and time.monotonic() < deadline:
        time.sleep(0.01)
    assert called == [(True, True, f"decision-log-writer:{(tmp_path / 'audit').name}")]
    assert receipt.sequence == 0

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    woke = threading.Event()
    log.add_commit_listener(woke.set)
    failed = log.submit(body(1))
    assert woke.wait(10) and failed.done()
    with pytest.raises(DecisionLogError, match="write failed"):
        failed.result()
    monkeypatch.undo()
    log.close()


def test_after_a_group_the_writer_waits_for_as_many_entries_at_most_the_delay(
    tmp_path: Path,
) -> None:
    """After a group of several entries (appenders at the same time) the writer waits,
    at most ``commit_delay``, until as many are queued as that group held: a group that
    fills is committed at once, entries arriving meanwhile join it, and a smaller group
    is committed when the delay is up. After a lone entry it does not wait."""
    log = DecisionLog(tmp_path / "audit", fsync=False, commit_delay=60)
    log.append(body(0))
    log.append(body(1))  # groups of one: never delayed (else this would take a minute)
    log.append_many([body(2), body(3)])  # a group of two
    first = log.submit(body(4))  # the writer waits for a second entry...
    time.sleep(0.2)
    assert not first.done()
    second = log.submit(body(5))  # ...which fills the group: committed together, at once
    assert second.result().sequence == first.result().sequence + 1 == 5
    stats = log.stats()
    assert stats.batches == 4 and stats.largest_batch == 2
    log.close()

    quick = DecisionLog(tmp_path / "quick", fsync=False, commit_delay=0.2)
    quick.append_many([body(0), body(1), body(2)])
    started = time.monotonic()
    quick.append(body(3))  # fewer than the last group: committed when the delay is up
    assert time.monotonic() - started >= 0.2
    assert quick.stats().batches == 2
    quick.close()
    with pytest.raises(ValueError, match="commit_delay"):
        DecisionLog(tmp_path / "other", commit_delay=-1)


def test_closing_does_not_wait_for_a_group_to_fill(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "audit", fsync=False, commit_delay=60)
    log.append_many([body(0), body(1)])
    pending = log.submit(body(2))  # the writer waits for a second entry
    time.sleep(0.1)
    log.close()  # writes what is queued without waiting out the delay
    assert pending.done() and pending.result().sequence == 2
    assert verify_log(tmp_path / "audit").entries == 3


# -- restart, torn tail, locking, closing -------------------------------------------------


def test_restart_continues_the_chain(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    first = fill(log_dir, 5, segment_bytes=1000)
    with DecisionLog(log_dir, fsync=False, segment_bytes=1000) as log:
        assert log.next_sequence == 5
        more = [log.append(body(i)) for i in range(5, 9)]
        entries = list(log.entries())
    assert [r.sequence for r in more] == [5, 6, 7, 8]
    assert entries[5].previous_hash == first[-1].hash
    assert verify_log(log_dir).entries == 9


def test_torn_tail_is_cut_off_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log_dir = tmp_path / "audit"
    receipts = fill(log_dir, 3)
    segment = log_dir / segment_name(1)
    intact = segment.stat().st_size
    torn = encode_line(3, receipts[-1].hash, "f" * 64, canonical_bytes(body(3)))[:57]
    with segment.open("ab") as handle:
        handle.write(torn)
    result = verify_log(log_dir)
    assert result.ok and result.entries == 3 and result.torn_tail_bytes == 57
    with caplog.at_level(logging.WARNING, logger="audit.log"):
        log = DecisionLog(log_dir)
    assert "unfinished last line" in caplog.text and "57 bytes" in caplog.text
    assert log.torn_tail_bytes == 57 and segment.stat().st_size == intact
    assert log.append(body(3)) == Receipt(3, log.entries(3).__next__().hash)
    log.close()
    assert where(verify_log(log_dir)) == (True, None, None, None)
    assert verify_log(log_dir).torn_tail_bytes == 0


def test_a_crash_right_after_creating_a_segment(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    fill(log_dir, 3)
    (log_dir / segment_name(2)).touch()  # rotation created it, then the process died
    assert verify_log(log_dir).ok
    with DecisionLog(log_dir) as log:
        assert log.append(body(3)).sequence == 3
    assert len(lines_of(log_dir / segment_name(2))) == 1
    assert verify_log(log_dir).entries == 4
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / segment_name(1)).touch()  # died while creating the log, before its head file
    with DecisionLog(fresh) as log:
        assert log.append(body(0)).sequence == 0
    assert verify_log(fresh).entries == 1


def test_one_process_at_a_time_and_no_appends_after_close(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "audit")
    with pytest.raises(DecisionLogError, match="already open"):
        DecisionLog(tmp_path / "audit")
    log.append(body(0))
    log.close()
    log.close()
    with pytest.raises(LogClosedError):
        log.append(body(1))
    with DecisionLog(tmp_path / "audit") as reopened:  # the lock was released
        assert reopened.next_sequence == 1


def test_a_failed_fsync_fails_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = DecisionLog(tmp_path / "audit")
    log.append(body(0))

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(DecisionLogError, match="write failed"):
        log.append(body(1))
    with pytest.raises(LogClosedError, match="failed earlier"):
        log.append(body(2))
    monkeypatch.undo()
    log.close()


# -- tampering: each caught and located ---------------------------------------------------


@pytest.fixture
def tampered(tmp_path: Path) -> tuple[Path, list[Receipt]]:
    """A closed log of 30 entries in 6 segments of 5 lines."""
    log_dir = tmp_path / "audit"
    longest = max(
        len(encode_line(i, "0" * 64, "0" * 64, canonical_bytes(body(i)))) for i in range(30)
    )
    receipts = fill(log_dir, 30, segment_bytes=5 * longest)
    assert [len(lines_of(p)) for p in sorted(log_dir.glob("segment-*.jsonl"))] == [5] * 6
    assert verify_log(log_dir).ok
    return log_dir, receipts


def refuses_to_open(log_dir: Path) -> ChainBrokenError:
    with pytest.raises(ChainBrokenError) as caught:
        DecisionLog(log_dir)
    return caught.value


def test_a_flipped_byte_in_a_body(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(3)  # seq 10..14
    lines = lines_of(segment)
    at = lines[2].index(b'"subject":"subject-12') + 12
    lines[2] = lines[2][:at] + bytes([lines[2][at] ^ 0x01]) + lines[2][at + 1 :]
    write_lines(segment, lines)
    result = verify_log(log_dir)
    assert where(result) == (False, 12, segment_name(3), 3)
    assert result.reason == "hash mismatch" and result.entries == 12


def test_a_deleted_line(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(3)
    lines = lines_of(segment)
    write_lines(segment, lines[:2] + lines[3:])
    result = verify_log(log_dir)
    assert where(result) == (False, 12, segment_name(3), 3)
    assert result.reason == "sequence gap (expected 12, found 13)"


def test_two_swapped_lines(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(4)  # seq 15..19
    lines = lines_of(segment)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(segment, lines)
    result = verify_log(log_dir)
    assert where(result) == (False, 16, segment_name(4), 2)
    assert result.reason == "sequence gap (expected 16, found 17)"


def test_swapped_lines_in_the_last_segment_refuse_to_open(
    tampered: tuple[Path, list[Receipt]],
) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(6)
    lines = lines_of(segment)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(segment, lines)
    error = refuses_to_open(log_dir)
    assert (error.sequence, error.segment, error.line) == (28, segment_name(6), 4)
    assert where(verify_log(log_dir)) == (False, 28, segment_name(6), 4)


def test_a_segment_cut_in_the_middle_of_a_line(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(2)  # seq 5..9
    data = segment.read_bytes()
    segment.write_bytes(data[: data.index(b'"seq":8') + 40])
    result = verify_log(log_dir)
    assert where(result) == (False, 8, segment_name(2), 4)
    assert result.reason == "truncated segment"


def test_a_non_last_segment_cut_at_a_line_boundary(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(2)
    write_lines(segment, lines_of(segment)[:3])  # seq 8 and 9 gone
    result = verify_log(log_dir)
    assert where(result) == (False, 8, segment_name(3), 1)
    assert result.reason == "sequence gap (expected 8, found 10)"


def test_the_last_segment_cut_at_a_line_boundary(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(6)  # seq 25..29
    write_lines(segment, lines_of(segment)[:3])
    result = verify_log(log_dir)
    assert where(result) == (False, 28, segment_name(6), 4)
    assert result.reason is not None and result.reason.startswith("truncated segment")
    assert "head file records 29" in result.reason
    assert refuses_to_open(log_dir).sequence == 28


def test_the_last_segment_cut_in_the_middle_of_a_line(
    tampered: tuple[Path, list[Receipt]],
) -> None:
    log_dir, _ = tampered
    segment = log_dir / segment_name(6)
    segment.write_bytes(segment.read_bytes()[:-30])  # not a crash: entry 29 was acknowledged
    result = verify_log(log_dir)
    assert where(result) == (False, 29, segment_name(6), 5)
    assert result.reason is not None and result.reason.startswith("truncated segment")
    assert refuses_to_open(log_dir).sequence == 29


def test_a_missing_segment_and_a_missing_head(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, _ = tampered
    (log_dir / segment_name(6)).unlink()  # the whole last segment: caught by the head
    assert where(verify_log(log_dir))[:3] == (False, 25, segment_name(5))
    (log_dir / segment_name(3)).unlink()
    result = verify_log(log_dir)
    assert where(result) == (False, 10, segment_name(3), None)
    assert result.reason == "segment missing"
    (log_dir / "head.json").unlink()
    assert verify_log(log_dir).reason == "head file missing"
    assert refuses_to_open(log_dir).reason == "segment missing"


def test_a_head_file_that_does_not_match_the_log(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, receipts = tampered
    head = log_dir / "head.json"
    head.write_bytes(encode_head(ChainHead(29, receipts[28].hash)))
    result = verify_log(log_dir)
    assert where(result) == (False, 29, segment_name(6), 5)
    assert result.reason == "hash does not match the head file"
    assert refuses_to_open(log_dir).reason == "hash does not match the head file"
    head.write_bytes(
        encode_head(ChainHead(29, receipts[29].hash)).replace(b'"seq":29', b'"seq":28')
    )
    assert verify_log(log_dir).reason == "head file malformed"
    assert refuses_to_open(log_dir).reason == "head file malformed"


def test_forged_entries_appended_at_the_end(tampered: tuple[Path, list[Receipt]]) -> None:
    log_dir, receipts = tampered
    segment = log_dir / segment_name(6)
    original = segment.read_bytes()
    forged = canonical_bytes(body(30, score=850))

    def append_and_verify(line: bytes) -> VerifyResult:
        segment.write_bytes(original + line)
        return verify_log(log_dir)

    # a wrong prev (with a hash that is right for it): recomputed but not linked
    wrong_prev = receipts[10].hash
    result = append_and_verify(
        encode_line(30, wrong_prev, entry_hash(wrong_prev, hashed_bytes(30, forged)), forged)
    )
    assert where(result) == (False, 30, segment_name(6), 6)
    assert result.reason == "previous hash does not match the entry before"
    # the right prev but a hash not recomputed for the forged body
    result = append_and_verify(encode_line(30, receipts[-1].hash, receipts[-1].hash, forged))
    assert where(result) == (False, 30, segment_name(6), 6)
    assert result.reason == "hash mismatch"
    # a forged copy of an earlier entry
    result = append_and_verify(lines_of(log_dir / segment_name(1))[0] + b"\n")
    assert where(result) == (False, 30, segment_name(6), 6)
    assert result.reason == "sequence out of order (expected 30, found 0)"
    assert refuses_to_open(log_dir).sequence == 30


def test_what_an_unsigned_chain_cannot_catch_and_what_an_anchor_does(
    tampered: tuple[Path, list[Receipt]],
) -> None:
    """Rewriting an entry and every entry after it (and the head) yields a consistent
    chain: only a hash recorded outside the log (an anchor) catches it."""
    log_dir, receipts = tampered
    anchor = {29: receipts[29].hash}
    assert verify_log(log_dir, anchors=anchor).ok
    previous = receipts[11].hash
    for number in (3, 4, 5, 6):
        segment = log_dir / segment_name(number)
        rewritten = []
        for raw in lines_of(segment):
            line = json.loads(raw)
            if line["seq"] < 12:
                rewritten.append(raw)
                continue
            if line["seq"] == 12:
                line["body"]["score"] = 850
            payload = canonical_bytes(line["body"])
            digest = entry_hash(previous, hashed_bytes(line["seq"], payload))
            rewritten.append(encode_line(line["seq"], previous, digest, payload)[:-1])
            previous = digest
        write_lines(segment, rewritten)
    (log_dir / "head.json").write_bytes(encode_head(ChainHead(29, previous)))
    assert verify_log(log_dir).ok  # undetectable from the directory alone
    result = verify_log(log_dir, anchors=anchor)
    assert where(result) == (False, 29, segment_name(6), 5)
    assert result.reason == "hash does not match the anchor"


# -- time range ---------------------------------------------------------------------------


def test_time_range_limits_what_is_counted_not_what_is_checked(
    tampered: tuple[Path, list[Receipt]],
) -> None:
    log_dir, _ = tampered
    from_time, to_time = T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)
    assert verify_log(log_dir, from_time=from_time, to_time=to_time).entries == 10
    naive = verify_log(log_dir, from_time=from_time.replace(tzinfo=None))
    assert naive.entries == 20
    segment = log_dir / segment_name(6)  # a break after the range still fails
    lines = lines_of(segment)
    write_lines(segment, lines[:1] + lines[2:])
    result = verify_log(log_dir, from_time=from_time, to_time=to_time)
    assert not result.ok and result.first_bad_sequence == 26


def test_a_walk_nobody_waits_for_any_more_stops(tmp_path: Path) -> None:
    log_dir = tmp_path / "audit"
    with DecisionLog(log_dir, fsync=False, segment_bytes=200_000) as log:
        log.append_many([body(i) for i in range(9_000)])
    assert len(list(log_dir.glob("segment-*.jsonl"))) > 5  # the count runs across segments
    asked: list[int] = []

    def wanted() -> bool:  # a caller who gives up at the second question
        asked.append(1)
        return len(asked) < 2

    with pytest.raises(ScanAbandoned, match="after 8192 entries"):
        verify_log(log_dir, wanted=wanted)
    assert len(asked) == 2
    patient = verify_log(log_dir, wanted=lambda: True)
    assert patient.ok and patient.entries == 9_000


# -- the CLI ------------------------------------------------------------------------------


def test_cli_audit_verify(tampered: tuple[Path, list[Receipt]]) -> None:
    from service.cli import main

    log_dir, _ = tampered
    data_dir = log_dir.parent
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--data-dir", str(data_dir)])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.output)
    assert report["ok"] is True and report["entries"] == 30
    ranged = runner.invoke(
        main,
        ["audit", "verify", "--data-dir", str(data_dir), "--from", "2026-11-26T09:00:10Z",
         "--to", "2026-11-26T09:00:20+00:00"],
    )  # fmt: skip
    assert json.loads(ranged.output)["entries"] == 10
    segment = log_dir / segment_name(2)
    lines = lines_of(segment)
    write_lines(segment, lines[:1] + lines[2:])
    bad = runner.invoke(main, ["audit", "verify", "--data-dir", str(data_dir)])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report.pop("last_hash") == json.loads(lines[0])["hash"]
    assert report == {
        "ok": False,
        "entries": 6,
        "first_bad_sequence": 6,
        "segment": segment_name(2),
        "line": 2,
        "reason": "sequence gap (expected 6, found 7)",
        "last_sequence": 5,
        "torn_tail_bytes": 0,
    }
    missing = runner.invoke(main, ["audit", "verify", "--data-dir", str(data_dir / "nowhere")])
    assert missing.exit_code == 1 and "log directory missing" in missing.output
    bad_time = runner.invoke(main, ["audit", "verify", "--from", "yesterday"])
    assert bad_time.exit_code == 2


# -- canonical bytes ----------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@given(st.dictionaries(st.text(max_size=8), json_value, max_size=6), st.randoms())
def test_canonical_bytes_ignore_key_order(value: dict[str, Any], rng: random.Random) -> None:
    reordered = shuffled(value, rng)
    assert canonical_bytes(reordered) == canonical_bytes(value)
    assert json.loads(canonical_bytes(value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip(number: float) -> None:
    back = json.loads(canonical_bytes({"x": number}))["x"]
    assert back == number and math.copysign(1.0, back) == math.copysign(1.0, number)
    assert canonical_bytes({"x": back}) == canonical_bytes({"x": number})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinity_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"x": [1, {"y": bad}]})


def test_canonical_bytes_are_utf8_without_spaces() -> None:
    assert canonical_bytes({"b": 1, "a": "名\n"}) == '{"a":"名\\n","b":1}'.encode()
