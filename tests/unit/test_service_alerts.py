"""Alerts: what counts as a change, how flags survive storage, per-platform numbering,
persistence across a restart, and watchlists kept in a real DuckDB file."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.warnings import Severity
from models.decisions import (
    Evidence,
    RelatedPartyRef,
    SubjectDecision,
    WarningFlag,
    flag_from_record,
    flag_record,
)
from models.model import Decision
from records.store import RecordStore
from service.alerts import Alert, AlertKind, AlertLog, Change, changes
from service.watchlists import Watch, Watchlists

REP = RelatedPartyRef("legal_representative", "person", "p" * 64)


def _flag(code: str, via: RelatedPartyRef | None = None, amount: float = 100.0) -> WarningFlag:
    return WarningFlag(
        code=code,
        severity=Severity.HIGH,
        description=f"{code} holds",
        since=date(2025, 1, 2),
        evidence=(
            Evidence(
                "public_record:COURT-33:R1",
                "enforcement",
                date(2025, 1, 2),
                amount,
                None,
                None,
                None,
            ),
        ),
        via=via,
    )


def _decided(score: int, grade: str, *flags: WarningFlag) -> SubjectDecision:
    return SubjectDecision(
        subject_type="entity",
        subject_key="91330106MA2XXXXX0X",
        features_as_of=date(2025, 6, 30),
        decision=Decision(0.05, score, grade, (), False, "v1"),
        warnings=flags,
        features=np.zeros(3),
        explained=True,
    )


def test_a_new_flag_is_raised_and_a_gone_one_cleared() -> None:
    old = _decided(600, "B", _flag("W_A"), _flag("W_B"))
    new = _decided(600, "B", _flag("W_B", amount=5.0), _flag("W_C"))
    found = changes(old, new, score_move_points=20)
    assert [(c.kind, c.warning.code if c.warning else None) for c in found] == [
        (AlertKind.RAISED, "W_C"),
        (AlertKind.CLEARED, "W_A"),
    ], "a flag whose evidence changed is the same flag: no alert"


def test_the_same_code_through_another_related_party_is_another_flag() -> None:
    old = _decided(600, "B", _flag("W_RP"))
    new = _decided(600, "B", _flag("W_RP"), _flag("W_RP", via=REP))
    (raised,) = changes(old, new, score_move_points=20)
    assert raised.kind is AlertKind.RAISED and raised.via == REP


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ((600, "B"), (619, "B"), []),
        ((600, "B"), (620, "B"), [AlertKind.SCORE_MOVE]),
        ((600, "B"), (575, "B"), [AlertKind.SCORE_MOVE]),
        ((600, "B"), (590, "C"), [AlertKind.GRADE_CHANGE]),
        ((600, "B"), (540, "C"), [AlertKind.GRADE_CHANGE]),  # not also a score move
    ],
)
def test_grade_changes_and_score_moves(
    old: tuple[int, str], new: tuple[int, str], expected: list[AlertKind]
) -> None:
    found = changes(_decided(*old), _decided(*new), score_move_points=20)
    assert [c.kind for c in found] == expected
    for change in found:
        assert (change.old_score, change.new_score) == (old[0], new[0])
        assert (change.old_grade, change.new_grade) == (old[1], new[1])


def test_a_subject_new_to_the_book_raises_its_flags_only() -> None:
    found = changes(None, _decided(500, "D", _flag("W_A")), score_move_points=1)
    assert [c.kind for c in found] == [AlertKind.RAISED]


_dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31))
_evidence = st.builds(
    Evidence,
    record=st.text(min_size=1, max_size=40),
    kind=st.none() | st.text(max_size=20),
    date=st.none() | _dates,
    amount=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    limit=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    days_past_due=st.none() | st.integers(0, 10_000),
    share=st.none() | st.floats(0, 1),
)
_flags = st.builds(
    WarningFlag,
    code=st.text(min_size=1, max_size=30),
    severity=st.sampled_from(list(Severity)),
    description=st.text(max_size=80),
    since=_dates,
    evidence=st.lists(_evidence, max_size=4).map(tuple),
    via=st.none()
    | st.builds(
        RelatedPartyRef,
        role=st.sampled_from(["legal_representative", "shareholder", "controlled_company"]),
        subject_type=st.sampled_from(["entity", "person"]),
        subject_key=st.text(min_size=1, max_size=64),
    ),
)


@given(_flags)
def test_a_flag_survives_its_record_exactly(flag: WarningFlag) -> None:
    import json

    assert flag_from_record(json.loads(json.dumps(flag_record(flag)))) == flag


def _alert(client: str, kind: AlertKind = AlertKind.RAISED, code: str = "W_A") -> Alert:
    change = (
        Change(kind, warning=_flag(code, via=REP))
        if kind in (AlertKind.RAISED, AlertKind.CLEARED)
        else Change(kind, old_grade="B", new_grade="C", old_score=600, new_score=560)
    )
    return Alert(
        0,
        client,
        "entity",
        "91330106MA2XXXXX0X",
        "loan-1",
        change,
        datetime(2025, 6, 30, 9, 30, 1, 123456, tzinfo=UTC),
        "01JDECISION",
    )


def test_alerts_are_numbered_per_platform_and_read_back_equal(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "store.duckdb") as store:
        log = AlertLog(store)
        stored = log.append(
            [_alert("bank-a"), _alert("bank-b"), _alert("bank-a", AlertKind.GRADE_CHANGE)]
        )
        assert [(a.client, a.alert_id) for a in stored] == [
            ("bank-a", 1),
            ("bank-b", 1),
            ("bank-a", 2),
        ]
        assert log.after("bank-a", 0, (), 100) == [stored[0], stored[2]]
        assert log.after("bank-a", 1, (), 100) == [stored[2]]
        assert log.after("bank-a", 0, {AlertKind.GRADE_CHANGE}, 100) == [stored[2]]
        assert log.after("bank-a", 0, (), 1) == [stored[0]]
        assert log.after("bank-c", 0, (), 100) == []
    with RecordStore(tmp_path / "store.duckdb") as store:  # a restart goes on numbering
        log = AlertLog(store)
        assert (log.last_id("bank-a"), log.last_id("bank-b"), log.last_id("bank-c")) == (2, 1, 0)
        (next_one,) = log.append([_alert("bank-b")])
        assert next_one.alert_id == 2
        assert log.after("bank-a", 0, (), 100)[1].change.old_score == 600


def test_a_waiting_stream_wakes_when_alerts_are_stored(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "store.duckdb") as store:
        log = AlertLog(store)
        version = log.version
        assert not log.wait(version, 0.05)
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(log.wait(version, 10)))
        waiter.start()
        log.append([_alert("bank-a")])
        waiter.join(10)
        assert woke == [True]


def _watch(client: str, key: str, reference: str = "") -> Watch:
    return Watch(client, "entity", key, reference, "", {"region": "33"})


def test_watchlists_count_add_rewatch_remove_and_survive_a_restart(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "store.duckdb") as store:
        lists = Watchlists(store)
        assert lists.add("bank-a", [_watch("bank-a", "K1"), _watch("bank-a", "K2")]) == (2, 2)
        assert lists.add("bank-a", [_watch("bank-a", "K1", "new-ref")]) == (0, 2)
        assert lists.add("bank-b", [_watch("bank-b", "K1")]) == (1, 1)
        assert {w.client for w in lists.watchers("K1")} == {"bank-a", "bank-b"}
        assert lists.remove("bank-a", ["K2", "K9"]) == (1, 1)
        with pytest.raises(ValueError, match="calling client"):
            lists.add("bank-a", [_watch("bank-b", "K3")])
    with RecordStore(tmp_path / "store.duckdb") as store:
        lists = Watchlists(store)
        assert (lists.watched("bank-a"), lists.watched("bank-b")) == (1, 1)
        mine = {w.client: w for w in lists.watchers("K1")}
        assert mine["bank-a"].reference == "new-ref" and mine["bank-a"].groups == {"region": "33"}
        assert lists.watchers("K2") == ()
