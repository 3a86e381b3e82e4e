"""The warning-flag catalog and its point-in-time evaluation with evidence."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import TEST_SECRET, TODAY, make_resident_id, make_uscc

from features.catalog import SubjectKind
from features.warning_eval import OUTPUT_SCHEMA, evaluate_warnings
from features.warnings import (
    RELATED_PARTY_FLAGS,
    WARNING_CATALOG,
    warning_catalog_hash,
    warning_rule,
)
from features.warnings_doc import render_warnings_doc
from records.generator import ProvinceParams, generate_province, to_file_frame
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER

PARAMS = ProvinceParams(entities=80, persons=200, seed=11)
AS_OF = date(2025, 12, 31)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("province") / "store.duckdb"
    frames = generate_province(PARAMS)
    with RecordStore(path) as store:
        ingestor = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY)
        for table in TABLE_ORDER:
            assert ingestor.ingest_frame(table, frames[table], label=table).rejected == 0
    return path


@pytest.fixture
def store(province: Path, tmp_path: Path) -> Iterator[RecordStore]:
    copy = tmp_path / "store.duckdb"
    shutil.copy(province, copy)
    with RecordStore(copy) as opened:
        yield opened


def add(store: RecordStore, table: str, rows: list[dict[str, object]]) -> None:
    frame = to_file_frame(table, pl.DataFrame(rows))
    summary = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY).ingest_frame(
        table, frame, label="test"
    )
    assert summary.rejected == 0, store.query("SELECT message FROM quarantine")


def pk(resident_id: str) -> str:
    return Pseudonymiser(TEST_SECRET).person_key(resident_id)


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour)


def d(day: str) -> date:
    return date.fromisoformat(day)


def new_entity(store: RecordStore, n: int, **changes: object) -> str:
    row: dict[str, object] = {
        "uscc": make_uscc(800_000 + n),
        "name": f"Warning Test Co {n}",
        "entity_type": "limited_liability_company",
        "industry": "C",
        "region_code": "330106",
        "registered_capital": 1_000_000.0,
        "established_on": d("2015-04-01"),
        "status": "active",
        "status_date": None,
        "source": "AMR-33",
        "reported_at": at("2024-01-02"),
    }
    row.update(changes)
    add(store, "legal_entity", [row])
    return str(row["uscc"])


def new_person(store: RecordStore, n: int) -> str:
    rid = str(make_resident_id(n, birth="19700101"))
    row = {"resident_id": rid, "residence_region": "330106", "education": "bachelor"}
    add(store, "natural_person", [row | {"source": "PSB-33", "reported_at": at("2024-01-02")}])
    return rid


def public(
    subject_id: str,
    kind_type: str,
    record_id: str,
    kind: str,
    event: str,
    reported: str,
    amount: float | None = 5000.0,
    **changes: object,
) -> dict[str, object]:
    row: dict[str, object] = {
        "record_id": record_id,
        "kind": kind,
        "subject_type": kind_type,
        "subject_id": subject_id,
        "event_date": d(event),
        "amount": amount,
        "status": "active",
        "cleared_on": None,
        "source": "COURT-33",
        "reported_at": at(reported),
    }
    return row | changes


def flags(store: RecordStore, as_of: date, key: str, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """The flags of subject ``key``, by code (and via subject, for related-party flags)."""
    rows = evaluate_warnings(store, as_of, **kwargs).filter(pl.col("subject_key") == key)
    out: dict[str, dict[str, Any]] = {}
    for row in rows.to_dicts():
        row["evidence"] = json.loads(row["evidence"])
        name = row["code"] if row["via_subject"] is None else f"{row['code']}@{row['via_subject']}"
        out[name] = row
    return out


def item(row: dict[str, Any], record: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in row["evidence"] if e["record"] == record]
    assert len(found) == 1, (record, row["evidence"])
    return found[0]


# --- the catalog ---------------------------------------------------------------------------

TESTED = {
    "W_DISHONEST_DEBTOR",
    "W_ENFORCEMENT",
    "W_CONSUMPTION_RESTRICTION",
    "W_BUSINESS_ABNORMAL",
    "W_SERIOUS_VIOLATION",
    "W_TAX_VIOLATION",
    "W_EQUITY_PLEDGE",
    "W_CHATTEL_MORTGAGE",
    "W_REPEATED_PENALTIES",
    "W_REVOKED_OR_DEREGISTERED",
    "W_CURRENTLY_OVERDUE",
    "W_DELINQUENCY_90_12M",
    "W_HIGH_UTILISATION",
    "W_MULTI_PLATFORM_BURST",
    *(code for codes in RELATED_PARTY_FLAGS.values() for code in codes.values()),
}


def test_catalog_is_sane_and_every_rule_is_tested() -> None:
    codes = [rule.code for rule in WARNING_CATALOG]
    assert len(codes) == len(set(codes))
    assert set(codes) == TESTED
    for rule in WARNING_CATALOG:
        assert re.fullmatch(r"W_[A-Z0-9_]+", rule.code), rule.code
        assert rule.kinds and all(isinstance(kind, SubjectKind) for kind in rule.kinds)
        assert rule.description and rule.condition and rule.evidence and rule.version >= 1
        if rule.code.startswith("W_RP_"):
            role = rule.code.split("_")[2]
            assert role in {"LEGAL", "SHAREHOLDER", "CONTROLLED"}, rule.code
    for role, codes_by_flag in RELATED_PARTY_FLAGS.items():
        for own, raised in codes_by_flag.items():
            assert warning_rule(own) and warning_rule(raised)
            expected = {"legal_representative": "LEGAL_REP", "controlled_company": "CONTROLLED"}
            assert raised.startswith(f"W_RP_{expected.get(role, role.upper())}_")
    assert re.fullmatch(r"[0-9a-f]{64}", warning_catalog_hash())
    assert "5 distinct lenders" in warning_rule("W_MULTI_PLATFORM_BURST").condition
    assert "90%" in warning_rule("W_HIGH_UTILISATION").condition


def test_committed_doc_matches_the_catalog() -> None:
    assert (ROOT / "docs" / "warnings.md").read_text(encoding="utf-8") == render_warnings_doc()


# --- public records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "code", "kind_type"),
    [
        ("dishonest_debtor", "W_DISHONEST_DEBTOR", "person"),
        ("enforcement", "W_ENFORCEMENT", "entity"),
        ("consumption_restriction", "W_CONSUMPTION_RESTRICTION", "person"),
        ("business_abnormal", "W_BUSINESS_ABNORMAL", "entity"),
        ("serious_violation", "W_SERIOUS_VIOLATION", "entity"),
        ("tax_violation", "W_TAX_VIOLATION", "entity"),
        ("equity_pledge", "W_EQUITY_PLEDGE", "entity"),
        ("chattel_mortgage", "W_CHATTEL_MORTGAGE", "person"),
    ],
)
def test_public_record_flag_point_in_time(
    store: RecordStore, kind: str, code: str, kind_type: str
) -> None:
    sid = new_entity(store, 1) if kind_type == "entity" else new_person(store, 1)
    key = sid if kind_type == "entity" else pk(sid)
    first = public(sid, kind_type, "R-1", kind, "2025-03-10", "2025-05-20", 5000.0)
    add(store, "public_record", [first])
    assert code not in flags(store, d("2025-05-19"), key)  # reported the next day
    row = flags(store, d("2025-05-20"), key)[code]
    assert row["severity"] == warning_rule(code).severity.value
    assert row["since"] == d("2025-03-10")
    assert row["via_role"] is None and row["via_subject"] is None
    assert row["evidence"] == [
        {
            "record": "public_record:COURT-33:R-1",
            "kind": kind,
            "date": "2025-03-10",
            "amount": 5000.0,
            "limit": None,
            "days_past_due": None,
            "role": None,
            "subject": None,
            "share": None,
        }
    ]
    # An earlier event reported later moves `since` back once it is reported.
    add(store, "public_record", [public(sid, kind_type, "R-2", kind, "2025-01-05", "2025-06-03")])
    assert flags(store, d("2025-06-02"), key)[code]["since"] == d("2025-03-10")
    row = flags(store, d("2025-06-03"), key)[code]
    assert row["since"] == d("2025-01-05")
    assert [e["record"] for e in row["evidence"]] == [
        "public_record:COURT-33:R-2",
        "public_record:COURT-33:R-1",
    ]
    # Cleared records raise nothing from the day the clearing is reported.
    cleared: dict[str, Any] = {"status": "cleared", "cleared_on": d("2025-06-28")}
    add(
        store,
        "public_record",
        [
            public(sid, kind_type, "R-1", kind, "2025-03-10", "2025-07-01", 5000.0, **cleared),
            public(sid, kind_type, "R-2", kind, "2025-01-05", "2025-07-01", **cleared),
        ],
    )
    assert code in flags(store, d("2025-06-30"), key)
    assert code not in flags(store, d("2025-07-01"), key)


def test_entity_only_flags_do_not_apply_to_persons(store: RecordStore) -> None:
    rid = new_person(store, 2)
    add(
        store,
        "public_record",
        [public(rid, "person", "A-1", "business_abnormal", "2025-03-10", "2025-03-11")],
    )
    assert flags(store, d("2025-04-01"), pk(rid)) == {}


def test_repeated_penalties(store: RecordStore) -> None:
    sid = new_entity(store, 3)
    pen = "administrative_penalty"
    add(store, "public_record", [public(sid, "entity", "P-1", pen, "2025-02-01", "2025-02-05")])
    add(store, "public_record", [public(sid, "entity", "P-2", pen, "2025-04-01", "2025-04-03")])
    assert "W_REPEATED_PENALTIES" not in flags(store, d("2025-04-02"), sid)
    row = flags(store, d("2025-04-03"), sid)["W_REPEATED_PENALTIES"]
    assert row["since"] == d("2025-04-01")  # the penalty that reached the threshold
    assert [e["record"] for e in row["evidence"]] == [
        "public_record:COURT-33:P-1",
        "public_record:COURT-33:P-2",
    ]
    assert "W_REPEATED_PENALTIES" not in flags(store, d("2025-04-03"), sid, repeated_penalties=3)
    cleared = public(sid, "entity", "P-1", pen, "2025-02-01", "2025-05-01", status="cleared")
    add(store, "public_record", [cleared | {"cleared_on": d("2025-04-30")}])
    assert "W_REPEATED_PENALTIES" not in flags(store, d("2025-05-01"), sid)


def test_revoked_or_deregistered(store: RecordStore) -> None:
    sid = new_entity(store, 4)
    changed = {"status": "revoked", "status_date": d("2025-03-01"), "reported_at": at("2025-03-04")}
    new_entity(store, 4, **changed)
    assert "W_REVOKED_OR_DEREGISTERED" not in flags(store, d("2025-03-03"), sid)
    row = flags(store, d("2025-03-04"), sid)["W_REVOKED_OR_DEREGISTERED"]
    assert row["since"] == d("2025-03-01")
    evidence = item(row, f"legal_entity:AMR-33:{sid}")
    assert evidence["kind"] == "revoked" and evidence["date"] == "2025-03-01"
    new_entity(store, 4, status="active", status_date=d("2025-04-01"), reported_at=at("2025-04-01"))
    assert "W_REVOKED_OR_DEREGISTERED" not in flags(store, d("2025-04-01"), sid)


# --- credit accounts and inquiries ---------------------------------------------------------


def account(
    sid: str, kind_type: str, account_id: str, product: str, limit: float
) -> dict[str, object]:
    return {
        "account_id": account_id,
        "subject_type": kind_type,
        "subject_id": sid,
        "product": product,
        "opened_on": d("2024-06-01"),
        "maturity_on": None,
        "closed_on": None,
        "credit_limit": limit,
        "guarantee_type": "unsecured",
        "source": "P0801",
        "reported_at": at("2024-06-02"),
    }


def month(
    account_id: str, period: str, days: int, amount: float, balance: float = 10_000.0
) -> dict[str, object]:
    p = d(period + "-01")
    reported = date(p.year + p.month // 12, p.month % 12 + 1, 5)
    return {
        "account_id": account_id,
        "period": p,
        "balance": balance,
        "amount_due": 1000.0,
        "amount_paid": 0.0 if days else 1000.0,
        "overdue_days": days,
        "overdue_amount": amount,
        "status": "overdue" if days else "normal",
        "source": "P0801",
        "reported_at": datetime.combine(reported, datetime.min.time()).replace(hour=9),
    }


def test_overdue_and_serious_delinquency(store: RecordStore) -> None:
    rid = new_person(store, 5)
    key = pk(rid)
    add(store, "credit_account", [account(rid, "person", "ACC-1", "consumer_loan", 20_000.0)])
    history = [
        ("2025-01", 0, 0.0),
        ("2025-02", 0, 0.0),
        ("2025-03", 0, 0.0),
        ("2025-04", 15, 500.0),
        ("2025-05", 45, 1000.0),
        ("2025-06", 75, 1500.0),
        ("2025-07", 105, 2000.0),
        ("2025-08", 0, 0.0),
    ]
    add(store, "repayment", [month("ACC-1", *row) for row in history])
    record = "credit_account:P0801:ACC-1"
    assert "W_CURRENTLY_OVERDUE" not in flags(store, d("2025-05-04"), key)  # April not yet in
    row = flags(store, d("2025-05-05"), key)["W_CURRENTLY_OVERDUE"]
    assert row["since"] == d("2025-04-01")
    assert (item(row, record)["date"], item(row, record)["amount"]) == ("2025-04-01", 500.0)
    row = flags(store, d("2025-07-10"), key)["W_CURRENTLY_OVERDUE"]
    assert row["since"] == d("2025-04-01")  # the start of the current overdue run
    evidence = item(row, record)
    assert (evidence["date"], evidence["amount"], evidence["days_past_due"]) == (
        "2025-06-01",
        1500.0,
        75,
    )
    assert "W_DELINQUENCY_90_12M" not in flags(store, d("2025-08-04"), key)
    row = flags(store, d("2025-08-05"), key)["W_DELINQUENCY_90_12M"]
    assert row["since"] == d("2025-07-01")
    evidence = item(row, record)
    assert (evidence["date"], evidence["amount"], evidence["days_past_due"]) == (
        "2025-07-01",
        2000.0,
        105,
    )
    after = flags(store, d("2025-09-05"), key)  # August paid: no longer overdue
    assert "W_CURRENTLY_OVERDUE" not in after and "W_DELINQUENCY_90_12M" in after
    assert "W_DELINQUENCY_90_12M" in flags(store, d("2026-07-31"), key)
    assert "W_DELINQUENCY_90_12M" not in flags(store, d("2026-08-01"), key)  # out of 12 months


def test_high_utilisation(store: RecordStore) -> None:
    sid = new_entity(store, 6)
    add(store, "credit_account", [account(sid, "entity", "CARD-1", "credit_card", 10_000.0)])
    add(store, "repayment", [month("CARD-1", "2025-06", 0, 0.0, balance=9500.0)])
    assert "W_HIGH_UTILISATION" not in flags(store, d("2025-07-04"), sid)
    row = flags(store, d("2025-07-05"), sid)["W_HIGH_UTILISATION"]
    assert row["since"] == d("2025-06-01")
    evidence = item(row, "credit_account:P0801:CARD-1")
    assert (evidence["amount"], evidence["limit"], evidence["date"]) == (
        9500.0,
        10_000.0,
        "2025-06-01",
    )
    assert "W_HIGH_UTILISATION" not in flags(store, d("2025-07-05"), sid, high_utilisation=0.96)
    add(store, "credit_account", [account(sid, "entity", "LOAN-2", "microloan", 10_000.0)])
    add(store, "repayment", [month("LOAN-2", "2025-06", 0, 0.0, balance=1000.0)])
    assert "W_HIGH_UTILISATION" not in flags(store, d("2025-07-05"), sid)  # 52.5% overall


def test_multi_platform_burst(store: RecordStore) -> None:
    rid = new_person(store, 7)
    inquiries = [
        {
            "inquiry_id": f"Q-{i}",
            "subject_type": "person",
            "subject_id": rid,
            "purpose": "loan_approval",
            "inquired_at": at(f"2025-05-0{min(i, 4) + 1}", 8),
            "source": f"P08{11 + i % 5}",
            "reported_at": at(f"2025-05-0{min(i, 4) + 1}", 10),
        }
        for i in range(6)  # the sixth is a second inquiry by the first lender
    ]
    add(store, "credit_inquiry", inquiries)
    key = pk(rid)
    assert "W_MULTI_PLATFORM_BURST" not in flags(store, d("2025-05-04"), key)  # 4 lenders
    row = flags(store, d("2025-05-05"), key)["W_MULTI_PLATFORM_BURST"]
    assert row["since"] == d("2025-05-05")
    assert [e["record"] for e in row["evidence"]] == [
        f"credit_inquiry:P08{11 + i}:Q-{i}" for i in range(5)
    ]
    assert "W_MULTI_PLATFORM_BURST" not in flags(
        store, d("2025-05-05"), key, multi_platform_threshold=6
    )
    assert "W_MULTI_PLATFORM_BURST" in flags(store, d("2025-05-31"), key)
    assert "W_MULTI_PLATFORM_BURST" not in flags(store, d("2025-06-05"), key)  # out of 30 days


# --- related parties -----------------------------------------------------------------------


def relation(
    uscc: str, rid: str, role: str, start: str, reported: str, **more: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "uscc": uscc,
        "resident_id": rid,
        "role": role,
        "share": None,
        "valid_from": d(start),
        "valid_to": None,
        "source": "AMR-33",
        "reported_at": at(reported),
    }
    return row | more


def test_related_party_flags(store: RecordStore) -> None:
    company = new_entity(store, 10)
    legal, major, minor = new_person(store, 10), new_person(store, 11), new_person(store, 12)
    add(
        store,
        "relation",
        [
            relation(company, legal, "legal_representative", "2024-01-01", "2024-01-02"),
            relation(company, major, "shareholder", "2025-04-01", "2025-04-02", share=0.1),
            relation(company, minor, "shareholder", "2024-01-01", "2024-01-02", share=0.03),
        ],
    )
    add(
        store,
        "public_record",
        [
            public(legal, "person", "D-1", "dishonest_debtor", "2025-02-01", "2025-02-03"),
            public(legal, "person", "X-1", "enforcement", "2025-02-10", "2025-02-12", 80_000.0),
            public(major, "person", "D-2", "dishonest_debtor", "2025-01-15", "2025-01-20"),
            public(major, "person", "X-2", "enforcement", "2025-03-01", "2025-03-02"),
            public(minor, "person", "D-3", "dishonest_debtor", "2025-01-15", "2025-01-20"),
        ],
    )
    assert flags(store, d("2025-02-02"), company) == {}
    got = flags(store, d("2025-06-01"), company)
    lk, mk = pk(legal), pk(major)
    assert set(got) == {
        f"W_RP_LEGAL_REP_DISHONEST@{lk}",
        f"W_RP_LEGAL_REP_ENFORCEMENT@{lk}",
        f"W_RP_SHAREHOLDER_DISHONEST@{mk}",
        f"W_RP_SHAREHOLDER_ENFORCEMENT@{mk}",
    }  # the 3% holder does not count
    row = got[f"W_RP_LEGAL_REP_ENFORCEMENT@{lk}"]
    assert (row["via_role"], row["via_subject"], row["since"]) == (
        "legal_representative",
        lk,
        d("2025-02-10"),
    )
    evidence = item(row, "public_record:COURT-33:X-1")
    assert (evidence["amount"], evidence["role"], evidence["subject"]) == (
        80_000.0,
        "legal_representative",
        lk,
    )
    rel = item(row, f"relation:AMR-33:{company}/{lk}/legal_representative/2024-01-01")
    assert (rel["date"], rel["kind"]) == ("2024-01-01", "relation")
    row = got[f"W_RP_SHAREHOLDER_DISHONEST@{mk}"]
    assert row["via_role"] == "shareholder"
    assert row["since"] == d("2025-04-01")  # the holding began after the listing
    assert item(row, f"relation:AMR-33:{company}/{mk}/shareholder/2025-04-01")["share"] == 0.1
    assert item(row, "public_record:COURT-33:D-2")["date"] == "2025-01-15"
    assert not any(k.startswith("W_RP_SHAREHOLDER") for k in flags(store, d("2025-04-01"), company))


def test_controlled_company_flags(store: RecordStore) -> None:
    company = new_entity(store, 20)
    boss, small, former = new_person(store, 20), new_person(store, 21), new_person(store, 22)
    add(
        store,
        "relation",
        [
            relation(company, boss, "legal_representative", "2024-01-01", "2024-01-02"),
            relation(company, small, "shareholder", "2024-01-01", "2024-01-02", share=0.04),
            relation(
                company,
                former,
                "legal_representative",
                "2020-01-01",
                "2024-01-02",
                valid_to=d("2023-12-31"),
            ),
        ],
    )
    add(
        store,
        "public_record",
        [
            public(company, "entity", "DC", "dishonest_debtor", "2025-03-01", "2025-03-05"),
            public(company, "entity", "XC", "enforcement", "2025-03-02", "2025-03-05", 12_345.67),
            public(company, "entity", "AC", "business_abnormal", "2025-03-03", "2025-03-05"),
        ],
    )
    new_entity(
        store, 20, status="deregistered", status_date=d("2025-05-01"), reported_at=at("2025-05-02")
    )
    got = flags(store, d("2025-06-01"), pk(boss))
    expected = {
        "W_RP_CONTROLLED_DISHONEST": d("2025-03-01"),
        "W_RP_CONTROLLED_ENFORCEMENT": d("2025-03-02"),
        "W_RP_CONTROLLED_ABNORMAL": d("2025-03-03"),
        "W_RP_CONTROLLED_REVOKED": d("2025-05-01"),
    }
    assert {name: row["since"] for name, row in got.items()} == {
        f"{code}@{company}": since for code, since in expected.items()
    }
    for row in got.values():
        assert (row["via_role"], row["via_subject"]) == ("controlled_company", company)
    assert (
        item(got[f"W_RP_CONTROLLED_ENFORCEMENT@{company}"], "public_record:COURT-33:XC")["amount"]
        == 12_345.67
    )
    assert flags(store, d("2025-06-01"), pk(small)) == {}
    assert flags(store, d("2025-06-01"), pk(former)) == {}  # the relation has ended
    assert "W_RP_CONTROLLED_REVOKED" not in {
        row["code"] for row in flags(store, d("2025-05-01"), pk(boss)).values()
    }


# --- scoped evaluation ---------------------------------------------------------------------


def test_subject_scoped_evaluation_matches_the_full_one(store: RecordStore) -> None:
    full = evaluate_warnings(store, AS_OF)
    assert dict(full.schema) == OUTPUT_SCHEMA
    assert full.filter(pl.col("via_role").is_not_null()).height > 0
    assert full.select("subject_key", "code", "via_subject").is_unique().all()
    flagged = full["subject_key"].unique().sort().to_list()
    everyone = [row[0] for row in store.query("SELECT uscc FROM legal_entity ORDER BY 1 LIMIT 3")]
    picks = flagged[:: max(1, len(flagged) // 12)] + everyone
    for key in picks:
        one = evaluate_warnings(store, AS_OF, [key])
        assert one.equals(full.filter(pl.col("subject_key") == key)), key
    some = evaluate_warnings(store, AS_OF, picks)
    assert some.equals(full.filter(pl.col("subject_key").is_in(picks)))
