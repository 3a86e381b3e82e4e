"""The point-in-time feature pipeline and feature store on a generated province."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import TEST_SECRET, TODAY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import sources
from features.catalog import CATALOG, SubjectKind, feature_names
from features.own import implied_annual_rate
from features.pipeline import KEY, build, neighbourhood
from features.sources import PointInTime, SharedCreditReads
from features.store import FeatureStore
from features.training import add_months, training_frame
from features.warning_eval import evaluate_warnings
from records.generator import ProvinceParams, generate_province, to_file_frame
from records.identifiers import resident_id_check_character
from records.ingest import Ingestor
from records.pseudonym import Pseudonymiser
from records.store import RecordStore
from records.tables import TABLE_ORDER

PARAMS = ProvinceParams(entities=250, persons=600, seed=3)
AS_OF = date(2025, 12, 31)


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pl.DataFrame]]:
    path = tmp_path_factory.mktemp("province") / "store.duckdb"
    frames = generate_province(PARAMS)
    with RecordStore(path) as store:
        ingestor = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY)
        for table in TABLE_ORDER:
            assert ingestor.ingest_frame(table, frames[table], label=table).rejected == 0
    return path, frames


@pytest.fixture
def store(province: tuple[Path, dict[str, pl.DataFrame]], tmp_path: Path) -> Iterator[RecordStore]:
    copy = tmp_path / "store.duckdb"
    shutil.copy(province[0], copy)
    with RecordStore(copy) as opened:
        yield opened


def add(store: RecordStore, table: str, rows: list[dict[str, object]]) -> None:
    frame = to_file_frame(table, pl.DataFrame(rows)) if rows else None
    assert frame is not None
    summary = Ingestor(store, Pseudonymiser(TEST_SECRET), today=TODAY).ingest_frame(
        table, frame, label="test"
    )
    assert summary.rejected == 0, store.query("SELECT message FROM quarantine")


def assert_frames_equal(left: pl.DataFrame, right: pl.DataFrame) -> None:
    assert left.columns == right.columns
    assert left.height == right.height
    for name in left.columns:
        a, b = left[name], right[name]
        if a.dtype == pl.Float64:
            np.testing.assert_allclose(
                a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-9, equal_nan=True, err_msg=name
            )
        else:
            assert a.to_list() == b.to_list(), name


def person_key(resident_id: str) -> str:
    return Pseudonymiser(TEST_SECRET).person_key(resident_id)


def test_rows_follow_the_catalog(store: RecordStore) -> None:
    rows = build(store, AS_OF)
    assert rows.columns == ["subject_type", "subject_key", *feature_names()]
    assert len(feature_names()) >= 60
    assert rows["subject_key"].is_unique().all()
    assert set(rows["subject_type"]) == {"entity", "person"}
    persons = rows.filter(pl.col("subject_type") == "person")
    for spec in CATALOG:
        if SubjectKind.PERSON not in spec.kinds:
            assert persons[spec.name].null_count() == persons.height, spec.name
    # A generated province has delinquency, public records and related-party signal.
    for name in (
        "rep_months_30plus_24m",
        "pub_business_abnormal_active",
        "inq_count_90d",
        "rp_sibling_companies",
        "rp_controlled_companies",
    ):
        assert rows[name].fill_null(0).sum() > 0, name


def test_build_is_deterministic_and_subject_subset_matches(store: RecordStore) -> None:
    full = build(store, AS_OF)
    assert_frames_equal(full, build(store, AS_OF))
    some = full["subject_key"].gather([0, 5, 17, full.height - 1, full.height - 30]).to_list()
    subset = build(store, AS_OF, some)
    assert_frames_equal(subset, full.filter(pl.col("subject_key").is_in(some)))


def late_records(
    frames: dict[str, pl.DataFrame], as_of: date, seed: int, count: int
) -> dict[str, list[dict[str, object]]]:
    """Records reported after ``as_of``: restatements of existing rows and new records
    whose events happened on or before ``as_of``."""
    rng = np.random.default_rng(seed)
    after = datetime.combine(as_of + timedelta(days=1), datetime.min.time())
    out: dict[str, list[dict[str, object]]] = {}
    for table, column in (
        ("repayment", "overdue_days"),
        ("legal_entity", "status"),
        ("public_record", "status"),
        ("relation", "valid_to"),
        ("credit_account", "closed_on"),
    ):
        frame = frames[table].filter(pl.col("reported_at") < after)
        picks = frame.sample(n=min(count, frame.height), seed=int(rng.integers(1 << 30)))
        rows = []
        for row in picks.to_dicts():
            row["reported_at"] = after + timedelta(hours=int(rng.integers(0, 24 * 60)))
            if column == "overdue_days":
                row["overdue_days"] = int(row["overdue_days"]) + 95
                row["overdue_amount"] = float(row["overdue_amount"]) + 10.0
                row["status"] = "overdue"
            elif column == "status" and table == "legal_entity":
                row["status"], row["status_date"] = "revoked", as_of
            elif column == "status":
                row["status"], row["cleared_on"] = "cleared", as_of
            elif column == "valid_to":
                row["valid_to"] = max(as_of - timedelta(days=1), row["valid_from"])
            else:
                row["closed_on"] = max(as_of - timedelta(days=3), row["opened_on"])
            rows.append(row)
        out[table] = rows
    people = frames["natural_person"].sample(n=count, seed=int(rng.integers(1 << 30)))
    out["public_record_new"] = [
        {
            "record_id": f"LATE-{seed}-{i}",
            "kind": "dishonest_debtor",
            "subject_type": "person",
            "subject_id": rid,
            "event_date": as_of - timedelta(days=20),
            "amount": 5000.0,
            "status": "active",
            "cleared_on": None,
            "source": "COURT-33",
            "reported_at": after + timedelta(minutes=i),
        }
        for i, rid in enumerate(people["resident_id"].to_list())
    ]
    out["credit_inquiry"] = [
        {
            "inquiry_id": f"LATE-{seed}-{i}",
            "subject_type": "person",
            "subject_id": rid,
            "purpose": "loan_approval",
            "inquired_at": after - timedelta(hours=3),
            "source": f"P{i % 50 + 1:04d}",
            "reported_at": after + timedelta(seconds=i),
        }
        for i, rid in enumerate(people["resident_id"].to_list())
    ]
    return out


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    months_back=st.integers(min_value=0, max_value=24),
    seed=st.integers(min_value=0, max_value=10_000),
    count=st.integers(min_value=1, max_value=12),
)
def test_records_reported_after_as_of_change_nothing(
    province: tuple[Path, dict[str, pl.DataFrame]],
    tmp_path_factory: pytest.TempPathFactory,
    months_back: int,
    seed: int,
    count: int,
) -> None:
    path, frames = province
    as_of = add_months(PARAMS.end_date, -months_back)
    copy = tmp_path_factory.mktemp("leak") / "store.duckdb"
    shutil.copy(path, copy)
    with RecordStore(copy) as store:
        before = build(store, as_of)
        late = late_records(frames, as_of, seed, count)
        for key, rows in late.items():
            table = "public_record" if key == "public_record_new" else key
            if rows:
                add(store, table, rows)
        assert store.count("repayment") > frames["repayment"].height  # the records went in
        assert_frames_equal(before, build(store, as_of))
        # ... and the same records do count once the as-of date reaches their reporting.
        later = build(store, as_of + timedelta(days=1 + 61))
        assert not later.equals(before)


def test_legal_representative_becoming_dishonest_reaches_the_company_only_once_reported(
    store: RecordStore, province: tuple[Path, dict[str, pl.DataFrame]]
) -> None:
    frames = province[1]
    rows = build(store, AS_OF)
    relations = frames["relation"].filter(
        (pl.col("role") == "legal_representative") & pl.col("valid_to").is_null()
    )
    clean_entities = set(
        rows.filter((pl.col("subject_type") == "entity") & (pl.col("rp_legal_rep_dishonest") == 0))[
            "subject_key"
        ]
    )
    relation = relations.filter(pl.col("uscc").is_in(clean_entities)).row(0, named=True)
    company, resident_id = relation["uscc"], relation["resident_id"]
    event, reported = date(2025, 11, 10), datetime(2025, 12, 5, 9, 30)
    add(
        store,
        "public_record",
        [
            {
                "record_id": "ZX-2025-0001",
                "kind": "dishonest_debtor",
                "subject_type": "person",
                "subject_id": resident_id,
                "event_date": event,
                "amount": 250000.0,
                "status": "active",
                "cleared_on": None,
                "source": "COURT-33",
                "reported_at": reported,
            }
        ],
    )

    def company_row(as_of: date) -> dict[str, object]:
        return build(store, as_of, [company]).row(0, named=True)

    def person_row(as_of: date) -> dict[str, object]:
        return build(store, as_of, [person_key(resident_id)]).row(0, named=True)

    for as_of in (date(2025, 11, 30), date(2025, 12, 4)):  # after the event, before reporting
        assert company_row(as_of)["rp_legal_rep_dishonest"] == 0
    for as_of in (date(2025, 12, 5), AS_OF):
        assert company_row(as_of)["rp_legal_rep_dishonest"] == 1
        assert person_row(as_of)["pub_dishonest_debtor_active"] >= 1
    # The full rebuild agrees with the subject-scoped one.
    full = build(store, AS_OF).filter(pl.col("subject_key") == company)
    assert full.row(0, named=True)["rp_legal_rep_dishonest"] == 1


def test_retention_drops_records_that_ended_long_ago(
    store: RecordStore, province: tuple[Path, dict[str, pl.DataFrame]]
) -> None:
    person = province[1]["natural_person"].row(3, named=True)["resident_id"]
    old = {
        "kind": "enforcement",
        "subject_type": "person",
        "subject_id": person,
        "amount": 1000.0,
        "status": "cleared",
        "source": "COURT-33",
    }
    add(
        store,
        "public_record",
        [
            old
            | {
                "record_id": "OLD-1",
                "event_date": date(2018, 3, 1),
                "cleared_on": date(2020, 6, 30),
                "reported_at": datetime(2020, 7, 1),
            },
        ],
    )
    key = person_key(person)

    def months_since(as_of: date, years: int = 5) -> object:
        rows = build(store, as_of, [key], retention_years=years)
        return rows.row(0, named=True)["pub_enforcement_months_since"]

    assert months_since(date(2025, 6, 29)) is not None  # ended < 5 years before
    assert months_since(date(2025, 7, 1)) is None  # ended > 5 years before: no longer counts
    assert months_since(date(2025, 7, 1), years=6) is not None  # retention is configurable


def test_exact_values_for_a_known_history(tmp_path: Path) -> None:
    with RecordStore(tmp_path / "s.duckdb") as store:
        rid = "33010619850315" + "0011"[:3]
        from records.identifiers import resident_id_check_character

        rid = rid + resident_id_check_character(rid)
        add(
            store,
            "natural_person",
            [
                {
                    "resident_id": rid,
                    "residence_region": "330106",
                    "education": "bachelor",
                    "source": "PSB-33",
                    "reported_at": datetime(2020, 1, 1),
                }
            ],
        )
        add(
            store,
            "credit_account",
            [
                {
                    "account_id": "C1",
                    "subject_type": "person",
                    "subject_id": rid,
                    "product": "credit_card",
                    "opened_on": date(2023, 1, 15),
                    "maturity_on": None,
                    "closed_on": None,
                    "credit_limit": 10000.0,
                    "guarantee_type": "unsecured",
                    "source": "P0001",
                    "reported_at": datetime(2023, 1, 16),
                },
                {
                    "account_id": "L1",
                    "subject_type": "person",
                    "subject_id": rid,
                    "product": "mortgage",
                    "opened_on": date(2025, 8, 1),
                    "maturity_on": None,
                    "closed_on": None,
                    "credit_limit": 500000.0,
                    "guarantee_type": "collateral",
                    "source": "P0002",
                    "reported_at": datetime(2025, 8, 2),
                },
            ],
        )
        # Card: 12 months to 2025-12; 35 days late in 2025-10, 65 in 2025-11, paid up 2025-12.
        overdue = {date(2025, 10, 1): 35, date(2025, 11, 1): 65}
        months = [date(2025, m, 1) for m in range(1, 13)]
        add(
            store,
            "repayment",
            [
                {
                    "account_id": "C1",
                    "period": m,
                    "balance": 4000.0 if m.month < 12 else 8000.0,
                    "amount_due": 400.0,
                    "amount_paid": 0.0 if m in overdue else 400.0,
                    "overdue_days": overdue.get(m, 0),
                    "overdue_amount": 400.0 if m in overdue else 0.0,
                    "status": "overdue" if m in overdue else "normal",
                    "source": "P0001",
                    "reported_at": datetime(m.year + (m.month == 12), m.month % 12 + 1, 10),
                }
                for m in months
            ],
        )
        add(
            store,
            "credit_inquiry",
            [
                {
                    "inquiry_id": f"I{i}",
                    "subject_type": "person",
                    "subject_id": rid,
                    "purpose": "loan_approval",
                    "inquired_at": datetime(2025, 12, 31 - i, 10),
                    "source": f"P000{1 + i % 3}",
                    "reported_at": datetime(2025, 12, 31, 12),
                }
                for i in range(5)
            ],
        )
        row = build(store, date(2026, 1, 10)).row(0, named=True)
        # The reporter restates November 2025 (95 days late, not 65) on 2026-01-05: a build
        # as of a later date takes the newer version, one as of an earlier date the older,
        # and the month counts once either way.
        restatement = {
            "account_id": "C1",
            "period": date(2025, 11, 1),
            "balance": 4000.0,
            "amount_due": 400.0,
            "amount_paid": 0.0,
            "overdue_days": 95,
            "overdue_amount": 800.0,
            "status": "overdue",
            "source": "P0001",
            "reported_at": datetime(2026, 1, 5, 12),
        }
        add(store, "repayment", [restatement])
        restated = build(store, date(2026, 1, 10)).row(0, named=True)
        earlier = build(store, date(2026, 1, 4)).row(0, named=True)
    assert restated["rep_worst_overdue_days_12m"] == 95
    assert restated["rep_months_90plus_3m"] == 1 and row["rep_months_90plus_3m"] == 0
    assert restated["rep_months_reported"] == row["rep_months_reported"] == 12
    assert earlier["rep_worst_overdue_days_12m"] == 65
    assert earlier["rep_months_reported"] == 11  # December is reported on 2026-01-10
    assert row["rep_current_overdue_days"] == 0
    assert row["rep_worst_overdue_days_12m"] == 65
    assert row["rep_months_30plus_3m"] == 2  # Oct-Dec 2025: the 3 complete months before as-of
    assert row["rep_months_60plus_3m"] == 1
    assert row["rep_months_90plus_24m"] == 0
    assert row["rep_months_since_delinquency"] == 1
    assert row["rep_payment_ratio_6m"] == pytest.approx(1600 / 2400)
    assert row["rep_utilisation"] == pytest.approx(0.8)
    assert row["rep_utilisation_trend_6m"] == pytest.approx(0.8 - 0.4)
    assert row["rep_open_accounts"] == 2
    assert row["rep_secured_share"] == pytest.approx(0.5)
    assert row["rep_accounts_opened_6m"] == 1
    assert row["inq_count_30d"] == 5 and row["inq_platforms_30d"] == 3
    assert row["inq_count_7d"] == 0  # the latest was on 2025-12-31, 10 days before
    assert row["per_age_years"] == 40
    assert row["subject_home_province"] == 1


def test_feature_store_lookup_load_and_refresh_equal_a_full_rebuild(
    store: RecordStore, province: tuple[Path, dict[str, pl.DataFrame]]
) -> None:
    features = FeatureStore(store)
    rows = features.materialise(AS_OF)
    key = rows["subject_key"][7]
    vector = features.lookup(key)
    assert vector is not None and vector.values.shape == (len(feature_names()),)
    expected = rows.filter(pl.col("subject_key") == key).select(feature_names()).to_numpy()[0]
    np.testing.assert_array_equal(vector.values, expected.astype(float))
    assert features.lookup("no-such-subject") is None

    reloaded = FeatureStore(store)
    reloaded.load(AS_OF)
    np.testing.assert_array_equal(reloaded.lookup(key).values, vector.values)  # type: ignore[union-attr]

    # New records for a few persons and a company, reported before the as-of date.
    frames = province[1]
    company = frames["legal_entity"].row(4, named=True)["uscc"]
    people = frames["natural_person"]["resident_id"].head(3).to_list()
    add(
        store,
        "public_record",
        [
            {
                "record_id": f"NEW-{i}",
                "kind": "enforcement",
                "subject_type": "person",
                "subject_id": rid,
                "event_date": date(2025, 12, 1),
                "amount": 9000.0,
                "status": "active",
                "cleared_on": None,
                "source": "COURT-33",
                "reported_at": datetime(2025, 12, 2),
            }
            for i, rid in enumerate(people)
        ]
        + [
            {
                "record_id": "NEW-C",
                "kind": "business_abnormal",
                "subject_type": "entity",
                "subject_id": company,
                "event_date": date(2025, 12, 1),
                "amount": None,
                "status": "active",
                "cleared_on": None,
                "source": "AMR-33",
                "reported_at": datetime(2025, 12, 2),
            },
        ],
    )
    touched = [person_key(r) for r in people] + [company]
    walked: list[tuple[list[str], list[str]]] = []
    refreshed = features.refresh(touched, on_neighbourhood=lambda a, r: walked.append((a, r)))
    assert set(touched) <= set(refreshed["subject_key"])
    # The neighbourhood it walked in memory is the one the warning rules would read.
    ((affected, ring),) = walked
    assert set(refreshed["subject_key"]) <= set(affected)
    assert ring == neighbourhood(store, PointInTime(AS_OF, 5), affected)
    assert evaluate_warnings(store, AS_OF, affected, scope=ring).equals(
        evaluate_warnings(store, AS_OF, affected)
    )
    # A running service refreshes without end: finished writes are not kept.
    for _ in range(3):
        features.refresh(touched)
    deadline = time.monotonic() + 30
    while features.unsettled_writes and time.monotonic() < deadline:
        time.sleep(0.05)
    assert features.unsettled_writes == 0
    features.flush()  # the refreshed rows are in the snapshot table too
    persisted = FeatureStore(store)
    persisted.load(AS_OF)
    for subject in refreshed["subject_key"].to_list():
        np.testing.assert_array_equal(
            persisted.lookup(subject).values,  # type: ignore[union-attr]
            features.lookup(subject).values,  # type: ignore[union-attr]
        )
    rebuilt = FeatureStore(store)
    full = rebuilt.materialise(AS_OF)
    for subject in full["subject_key"].to_list():
        np.testing.assert_array_equal(
            features.lookup(subject).values,
            rebuilt.lookup(subject).values,  # type: ignore[union-attr]
            err_msg=subject,
        )
    changed = full.filter(pl.col("subject_key").is_in(touched))
    assert changed["pub_enforcement_active"].fill_null(0).sum() >= 3


def test_training_frame_labels_and_exclusions(
    store: RecordStore, province: tuple[Path, dict[str, pl.DataFrame]]
) -> None:
    dates = [date(2024, 6, 30), date(2024, 12, 31)]
    frame = training_frame(store, dates, horizon_months=12)
    assert frame["as_of"].unique().sort().to_list() == dates
    defaults = store.query("SELECT subject_key, default_date FROM default_event")
    for as_of in dates:
        at = frame.filter(pl.col("as_of") == as_of)
        horizon_end = add_months(as_of, 12)
        bad = {k for k, d in defaults if as_of < d <= horizon_end}
        in_default = {k for k, d in defaults if add_months(as_of, -12) < d <= as_of}
        known = set(build(store, as_of)["subject_key"])  # subjects on file at the as-of date
        assert set(at.filter(pl.col("label") == 1)["subject_key"]) == (bad - in_default) & known
        assert not in_default & set(at["subject_key"])
        assert at["label"].sum() > 0


def test_implied_rate_card_repayment_and_education(tmp_path: Path) -> None:
    # A 12-month consumer loan of 12,000 at 12% a year (reference 9%): instalment 1,066.19.
    principal = np.array([12_000.0, 10_000.0, 500_000.0])
    instalment = np.array([1_066.19, 10_000.0 / 12, 2_387.08])
    months = np.array([12, 12, 360], dtype=np.int64)
    rates = implied_annual_rate(principal, instalment, months)
    np.testing.assert_allclose(rates, [0.12, 0.0, 0.04], atol=2e-5)
    with RecordStore(tmp_path / "s.duckdb") as store:
        rid = "330106198503150016"
        assert resident_id_check_character(rid[:17]) == rid[17]
        add(
            store,
            "natural_person",
            [
                {
                    "resident_id": rid,
                    "residence_region": None,
                    "education": "vocational",
                    "source": "PSB-33",
                    "reported_at": datetime(2020, 1, 1),
                }
            ],
        )
        account = {
            "subject_type": "person",
            "subject_id": rid,
            "closed_on": None,
            "source": "P0001",
            "reported_at": datetime(2025, 1, 10),
        }
        add(
            store,
            "credit_account",
            [
                account
                | {
                    "account_id": "L1",
                    "product": "consumer_loan",
                    "opened_on": date(2025, 1, 5),
                    "maturity_on": date(2026, 1, 5),
                    "credit_limit": 12000.0,
                    "guarantee_type": "unsecured",
                },
                account
                | {
                    "account_id": "C1",
                    "product": "credit_card",
                    "opened_on": date(2025, 1, 5),
                    "maturity_on": None,
                    "credit_limit": 10000.0,
                    "guarantee_type": "unsecured",
                },
            ],
        )
        month = {"overdue_days": 0, "overdue_amount": 0.0, "status": "normal", "source": "P0001"}
        add(
            store,
            "repayment",
            [
                month
                | {
                    "account_id": "L1",
                    "period": date(2025, m, 1),
                    "balance": 12000.0 - 900.0 * m,
                    "amount_due": 1066.19,
                    "amount_paid": 1066.19,
                    "reported_at": datetime(2025, m + 1, 10),
                }
                for m in range(2, 7)
            ]
            + [
                month
                | {
                    "account_id": "C1",
                    "period": date(2025, m, 1),
                    "balance": 5000.0,
                    "amount_due": 500.0,
                    # 40% of what is beyond the minimum (30% in one month: the median holds)
                    "amount_paid": 500.0 + (0.3 if m == 3 else 0.4) * 4500.0,
                    "reported_at": datetime(2025, m + 1, 10),
                }
                for m in range(2, 7)
            ],
        )
        row = build(store, date(2025, 7, 15)).row(0, named=True)
    assert row["rep_rate_spread_avg"] == pytest.approx(3.0, abs=2e-3)
    assert row["rep_rate_spread_max"] == row["rep_rate_spread_avg"]
    assert row["rep_card_repayment_share_12m"] == pytest.approx(0.4)
    assert row["per_education_level"] == 2


def test_a_job_reads_the_credit_tables_once_for_features_and_warnings(
    store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SharedCreditReads: the batch job's feature build and warning rules share one read
    of accounts and repayment months, and get what they would have read alone."""
    alone_features = build(store, AS_OF)
    alone_warnings = evaluate_warnings(store, AS_OF)
    some = alone_features[KEY].to_list()[::7]
    alone_some = build(store, AS_OF, some), evaluate_warnings(store, AS_OF, some)
    reads: list[object] = []
    real_read = sources.read_credit

    def counted(*args: object) -> object:
        reads.append(args[1])
        return real_read(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sources, "read_credit", counted)
    shared = SharedCreditReads()
    assert_frames_equal(build(store, AS_OF, credit_reads=shared), alone_features)
    assert_frames_equal(evaluate_warnings(store, AS_OF, credit_reads=shared), alone_warnings)
    assert len(reads) == 1
    # Scoped to some subjects: one more read (other keys), shared again.
    assert_frames_equal(build(store, AS_OF, some, credit_reads=shared), alone_some[0])
    assert_frames_equal(evaluate_warnings(store, AS_OF, some, credit_reads=shared), alone_some[1])
    assert len(reads) == 2
