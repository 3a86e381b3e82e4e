"""The synthetic province generator: schema, validity, realism, faults and files."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from records.generator import (
    FAULT_KINDS,
    InjectedFault,
    ProvinceParams,
    generate_province,
    inject_faults,
    to_file_frame,
    write_files,
)
from records.identifiers import (
    uscc_rejection,
    validate_resident_id,
    validate_uscc,
)
from records.regions import DISTRICT_CODES
from records.tables import TABLE_ORDER, TABLES, FieldKind

SMALL = ProvinceParams(entities=200, persons=500, seed=1)
MEDIUM = ProvinceParams(entities=6_000, persons=15_000, seed=5)
END_US = datetime.combine(SMALL.end_date, datetime.max.time())

DTYPES = {
    FieldKind.DATE: pl.Date,
    FieldKind.MONTH: pl.Date,
    FieldKind.TIMESTAMP: pl.Datetime("us"),
    FieldKind.AMOUNT: pl.Float64,
    FieldKind.SHARE: pl.Float64,
    FieldKind.INTEGER: pl.Int32,
}
SUBJECT_TABLES = ("credit_account", "public_record", "credit_inquiry", "default_event")


@pytest.fixture(scope="module")
def small() -> dict[str, pl.DataFrame]:
    return generate_province(SMALL)


@pytest.fixture(scope="module")
def medium() -> dict[str, pl.DataFrame]:
    return generate_province(MEDIUM)


@pytest.fixture(scope="module")
def faulty(small: dict[str, pl.DataFrame]) -> tuple[dict[str, pl.DataFrame], list[InjectedFault]]:
    return inject_faults(small, 0.05, seed=3)


def _both(
    small: dict[str, pl.DataFrame], medium: dict[str, pl.DataFrame]
) -> list[dict[str, pl.DataFrame]]:
    return [small, medium]


# -- schema and determinism -------------------------------------------------------------


def test_same_seed_same_frames_other_seed_other_frames(small: dict[str, pl.DataFrame]) -> None:
    again = generate_province(SMALL)
    assert list(again) == list(TABLE_ORDER)
    for table in TABLE_ORDER:
        assert again[table].equals(small[table]), table
    other = generate_province(ProvinceParams(entities=200, persons=500, seed=2))
    for table in TABLE_ORDER:
        assert not other[table].equals(small[table]), table


def test_columns_and_dtypes_follow_the_table_declarations(small: dict[str, pl.DataFrame]) -> None:
    for table in TABLE_ORDER:
        spec = TABLES[table]
        frame = small[table]
        assert frame.columns == list(spec.field_names), table
        assert frame.height > 0, table
        for f in spec.fields:
            expected = DTYPES.get(f.kind, pl.String)
            assert frame.schema[f.name] == expected, (table, f.name)


def test_small_province_is_fast() -> None:
    started = time.perf_counter()
    generate_province(ProvinceParams(entities=200, persons=500, seed=9))
    assert time.perf_counter() - started < 2.0


def test_a_province_without_entities() -> None:
    frames = generate_province(ProvinceParams(entities=0, persons=300, seed=4))
    assert frames["legal_entity"].height == 0
    assert frames["relation"].height == 0
    assert frames["natural_person"].height == 300
    assert frames["credit_account"].height > 0
    assert set(frames["credit_account"]["subject_type"]) == {"person"}


# -- validity -----------------------------------------------------------------------------


def test_every_identifier_is_valid_and_unique(medium: dict[str, pl.DataFrame]) -> None:
    usccs = medium["legal_entity"]["uscc"].to_list()
    for code in usccs:
        validate_uscc(code)
    ids = medium["natural_person"]["resident_id"].to_list()
    for number in ids:
        validate_resident_id(number, today=MEDIUM.end_date)
    assert len(set(usccs)) == len(usccs)
    assert len(set(ids)) == len(ids)
    assert len({code[8:16] for code in usccs}) == len(usccs)  # organisation codes


def test_uscc_structure_and_regions(medium: dict[str, pl.DataFrame]) -> None:
    entities = medium["legal_entity"]
    assert (entities["uscc"].str.slice(0, 1) == "9").all()
    category = entities["uscc"].str.slice(1, 1)
    individual = entities["entity_type"] == "individual_business"
    assert (category == pl.Series(["2" if i else "1" for i in individual])).all()
    assert (entities["uscc"].str.slice(2, 6) == entities["region_code"]).all()
    assert set(entities["region_code"]) <= set(DISTRICT_CODES)
    home = (entities["region_code"].str.slice(0, 2) == "33").mean()
    assert isinstance(home, float) and 0.8 < home < 0.9
    persons = medium["natural_person"]
    assert set(persons["resident_id"].str.slice(0, 6)) <= set(DISTRICT_CODES)
    assert set(persons["residence_region"].drop_nulls()) <= set(DISTRICT_CODES)
    assert 0 < persons["education"].null_count() < persons.height / 4


def test_values_are_valid_for_their_kind(
    small: dict[str, pl.DataFrame], medium: dict[str, pl.DataFrame]
) -> None:
    for frames in _both(small, medium):
        for table in TABLE_ORDER:
            spec = TABLES[table]
            frame = frames[table]
            for f in spec.fields:
                col = frame[f.name]
                if f.required:
                    assert col.null_count() == 0, (table, f.name)
                values = col.drop_nulls()
                if f.kind in (FieldKind.ENUM, FieldKind.SUBJECT_TYPE):
                    assert set(values) <= set(f.values), (table, f.name)
                elif f.kind is FieldKind.AMOUNT:
                    assert (values >= 0).all(), (table, f.name)
                    assert ((values - values.round(2)).abs() < 1e-9).all(), (table, f.name)
                elif f.kind is FieldKind.SHARE:
                    assert ((values > 0) & (values <= 1)).all()
                    assert ((values - values.round(4)).abs() < 1e-12).all()
                elif f.kind is FieldKind.INTEGER:
                    assert values.is_between(f.minimum, f.maximum).all(), (table, f.name)
                elif f.kind is FieldKind.MONTH:
                    assert (values.dt.day() == 1).all()
                elif f.kind is FieldKind.DATE:
                    assert (values >= date(1900, 1, 1)).all()
                elif f.kind in (FieldKind.TEXT, FieldKind.CODE):
                    assert (values.str.len_chars() <= f.max_length).all(), (table, f.name)
                    if f.kind is FieldKind.CODE:
                        assert values.str.contains(r"^[A-Z0-9][A-Z0-9_.\-]*$").all()


def test_cross_field_consistency(medium: dict[str, pl.DataFrame]) -> None:
    entity = medium["legal_entity"]
    assert entity.filter(pl.col("status_date") < pl.col("established_on")).height == 0
    assert (entity["status_date"].is_null() == (entity["status"] == "active")).all()
    rel = medium["relation"]
    assert ((rel["role"] == "shareholder") == rel["share"].is_not_null()).all()
    assert rel.filter(pl.col("valid_to") < pl.col("valid_from")).height == 0
    acc = medium["credit_account"]
    assert acc.filter(pl.col("closed_on") < pl.col("opened_on")).height == 0
    assert acc.filter(pl.col("maturity_on") < pl.col("opened_on")).height == 0
    assert ((acc["product"] == "credit_card") == acc["maturity_on"].is_null()).all()
    pub = medium["public_record"]
    assert ((pub["status"] == "cleared") == pub["cleared_on"].is_not_null()).all()
    assert pub.filter(pl.col("cleared_on") < pl.col("event_date")).height == 0
    rep = medium["repayment"]
    assert rep.filter((pl.col("status") == "normal") & (pl.col("overdue_days") > 0)).height == 0
    assert rep.filter((pl.col("status") == "overdue") & (pl.col("overdue_days") == 0)).height == 0
    assert rep.filter((pl.col("status") == "closed") & (pl.col("balance") > 0)).height == 0
    assert rep.filter(pl.col("status") == "written_off")["overdue_days"].min() >= 180  # type: ignore[operator]
    assert rep.filter(pl.col("overdue_amount") > pl.col("balance") + 0.01).height == 0


def test_natural_keys_are_unique(
    small: dict[str, pl.DataFrame], medium: dict[str, pl.DataFrame]
) -> None:
    for frames in _both(small, medium):
        for table in TABLE_ORDER:
            key = list(TABLES[table].natural_key)
            assert not frames[table].select(key).is_duplicated().any(), table


def test_event_dates_are_not_after_reported_at_nor_end_date(
    small: dict[str, pl.DataFrame], medium: dict[str, pl.DataFrame]
) -> None:
    for frames in _both(small, medium):
        for table in TABLE_ORDER:
            frame = frames[table]
            assert frame["reported_at"].max() <= END_US, table  # type: ignore[operator]
            for name in TABLES[table].event_dates:
                if frame.schema[name] == pl.Datetime("us"):
                    later = pl.col(name) > pl.col("reported_at")
                else:
                    later = pl.col(name) > pl.col("reported_at").dt.date()
                assert frame.filter(later).height == 0, (table, name)


def test_referential_integrity(
    small: dict[str, pl.DataFrame], medium: dict[str, pl.DataFrame]
) -> None:
    for frames in _both(small, medium):
        usccs = set(frames["legal_entity"]["uscc"])
        persons = set(frames["natural_person"]["resident_id"])
        rel = frames["relation"]
        assert set(rel["uscc"]) <= usccs
        assert set(rel["resident_id"]) <= persons
        for table in SUBJECT_TABLES:
            frame = frames[table]
            entities = frame.filter(pl.col("subject_type") == "entity")["subject_id"]
            people = frame.filter(pl.col("subject_type") == "person")["subject_id"]
            assert set(entities) <= usccs, table
            assert set(people) <= persons, table
        accounts = frames["credit_account"].select("source", "account_id")
        missing = frames["repayment"].join(accounts, on=["source", "account_id"], how="anti")
        assert missing.height == 0
        defaults = frames["default_event"].filter(pl.col("account_id").is_not_null())
        assert defaults.join(accounts, on=["source", "account_id"], how="anti").height == 0


def test_persons_are_reported_before_anything_refers_to_them(
    medium: dict[str, pl.DataFrame],
) -> None:
    persons = medium["natural_person"].select(
        pl.col("resident_id").alias("id"), pl.col("reported_at").alias("known")
    )
    uses = [medium["relation"].select(pl.col("resident_id").alias("id"), "reported_at")]
    for table in SUBJECT_TABLES:
        frame = medium[table].filter(pl.col("subject_type") == "person")
        uses.append(frame.select(pl.col("subject_id").alias("id"), "reported_at"))
    first = pl.concat(uses).group_by("id").agg(pl.col("reported_at").min())
    joined = first.join(persons, on="id")
    assert joined.height == first.height
    assert (joined["known"] < joined["reported_at"]).all()


# -- relations ------------------------------------------------------------------------------


def _current(rel: pl.DataFrame, day: date) -> pl.DataFrame:
    return rel.filter(
        (pl.col("valid_from") <= day) & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= day))
    )


def test_current_shareholders_hold_exactly_everything(medium: dict[str, pl.DataFrame]) -> None:
    rel = medium["relation"].filter(pl.col("role") == "shareholder")
    current = rel.filter(pl.col("valid_to").is_null())
    sums = current.group_by("uscc").agg(pl.col("share").sum().round(4), pl.len())
    assert sums.height == medium["legal_entity"].height
    assert (sums["share"] == 1.0).all()
    assert sums["len"].max() <= 5  # type: ignore[operator]
    assert (rel.filter(pl.col("valid_to").is_not_null())["share"] == 1.0).all()  # old sole owners


def test_exactly_one_legal_representative_at_end_date(medium: dict[str, pl.DataFrame]) -> None:
    reps = medium["relation"].filter(pl.col("role") == "legal_representative")
    counts = _current(reps, MEDIUM.end_date).group_by("uscc").len()
    assert counts.height == medium["legal_entity"].height
    assert (counts["len"] == 1).all()
    # A representative who left is replaced the next day.
    ended = reps.filter(pl.col("valid_to").is_not_null())
    assert ended.height > 0
    successors = ended.select(
        "uscc", (pl.col("valid_to") + pl.duration(days=1)).alias("valid_from")
    ).join(reps, on=["uscc", "valid_from"], how="anti")
    assert successors.height == 0


def test_relations_start_after_founding_and_people_are_adults(
    medium: dict[str, pl.DataFrame],
) -> None:
    rel = medium["relation"].join(
        medium["legal_entity"].select("uscc", "established_on"), on="uscc"
    )
    assert rel.filter(pl.col("valid_from") < pl.col("established_on")).height == 0
    people = rel.with_columns(
        pl.col("resident_id").str.slice(6, 8).str.to_date("%Y%m%d").alias("birth")
    )
    age = (pl.col("valid_from") - pl.col("birth")).dt.total_days() / 365.25
    assert people.filter(age < 17.99).height == 0  # every role, including shareholders


def test_ownership_network_shape(medium: dict[str, pl.DataFrame]) -> None:
    rel = medium["relation"]
    n_entities = medium["legal_entity"].height
    n_persons = medium["natural_person"].height
    reps = rel.filter((pl.col("role") == "legal_representative") & pl.col("valid_to").is_null())
    per_person = reps.group_by("resident_id").len()
    serial = per_person.filter(pl.col("len") >= 2).height / n_persons
    assert 0.05 < serial < 0.15
    assert per_person["len"].max() >= 5  # type: ignore[operator]  # heavy tail
    guarantors = rel.filter(pl.col("role") == "guarantor")["uscc"].n_unique() / n_entities
    assert 0.1 < guarantors < 0.2
    holders = rel.filter(pl.col("role") == "shareholder").select("uscc", "resident_id")
    rep_holds = reps.join(holders, on=["uscc", "resident_id"], how="semi").height / reps.height
    assert rep_holds > 0.6


# -- credit history -------------------------------------------------------------------------


def test_repayment_rows_follow_the_account_life(medium: dict[str, pl.DataFrame]) -> None:
    acc = medium["credit_account"]
    rep = medium["repayment"]
    per_account = rep.group_by("source", "account_id").agg(
        pl.col("period").min().alias("first"),
        pl.col("period").max().alias("last"),
        pl.len(),
        pl.col("status").last().alias("final"),
        pl.col("reported_at").min().alias("first_report"),
    )
    joined = per_account.join(acc, on=["source", "account_id"])
    months = (pl.col("last").dt.year() - pl.col("first").dt.year()) * 12 + (
        pl.col("last").dt.month() - pl.col("first").dt.month()
    )
    assert (joined.select(months + 1 == pl.col("len"))).to_series().all()  # no gaps
    assert joined.filter(pl.col("first") < pl.col("opened_on").dt.truncate("1mo")).height == 0
    closed = joined.filter(pl.col("closed_on").is_not_null())
    assert closed.filter(pl.col("last") != pl.col("closed_on").dt.truncate("1mo")).height == 0
    assert set(closed["final"]) <= {"closed", "written_off"}
    assert (
        joined.filter(
            pl.col("final").is_in(["closed", "written_off"]) & pl.col("closed_on").is_null()
        ).height
        == 0
    )
    # Rows are reported 5-20 days after the month end.
    lag = (pl.col("reported_at").dt.date() - pl.col("period").dt.month_end()).dt.total_days()
    lags = rep.select(lag.alias("lag"))["lag"]
    assert lags.min() >= 5 and lags.max() <= 20  # type: ignore[operator]
    assert rep.height > 10 * acc.height  # the bulk of the data


def test_default_rate_and_kinds(medium: dict[str, pl.DataFrame]) -> None:
    borrowers = medium["credit_account"].select("subject_type", "subject_id").unique()
    defaulted = medium["default_event"].select("subject_type", "subject_id").unique()
    rate = defaulted.height / borrowers.height
    assert 0.03 <= rate <= 0.06
    kinds = medium["default_event"]["kind"].value_counts()
    counts = dict(zip(kinds["kind"], kinds["count"], strict=True))
    assert counts["overdue_90_days"] == max(counts.values())
    assert set(counts) == set(TABLES["default_event"].field("kind").values)


def test_defaults_are_preceded_by_rolling_delinquency(medium: dict[str, pl.DataFrame]) -> None:
    events = medium["default_event"].filter(pl.col("kind") == "overdue_90_days")
    history = medium["repayment"].join(
        events.select("source", "account_id", "default_date"), on=["source", "account_id"]
    )
    before = history.filter(pl.col("period") < pl.col("default_date").dt.truncate("1mo"))
    rolled = before.group_by("source", "account_id").agg(
        pl.col("overdue_days").is_between(30, 59).any().alias("d30"),
        pl.col("overdue_days").is_between(60, 89).any().alias("d60"),
    )
    assert rolled.height > 0.9 * events.height
    assert rolled["d30"].mean() > 0.9  # type: ignore[operator]
    assert rolled["d60"].mean() > 0.9  # type: ignore[operator]
    at = history.filter(pl.col("period") == pl.col("default_date").dt.truncate("1mo"))
    assert (at["overdue_days"] >= 90).all()


def _bad_subjects(frames: dict[str, pl.DataFrame], since: date | None = None) -> pl.DataFrame:
    events = frames["default_event"]
    if since is not None:
        events = events.filter(pl.col("default_date") >= since)
    return events.select("subject_id").unique().with_columns(pl.lit(True).alias("bad"))


def test_prior_delinquency_predicts_default(medium: dict[str, pl.DataFrame]) -> None:
    cut = date(2024, 7, 1)
    acc = medium["credit_account"].select("source", "account_id", "subject_id")
    early = (
        medium["repayment"]
        .filter((pl.col("period") < cut) & (pl.col("overdue_days") >= 30))
        .join(acc, on=["source", "account_id"])
        .select("subject_id")
        .unique()
        .with_columns(pl.lit(True).alias("early"))
    )
    already = medium["default_event"].filter(pl.col("default_date") < cut).select("subject_id")
    subjects = (
        acc.select("subject_id")
        .unique()
        .join(already, on="subject_id", how="anti")
        .join(early, on="subject_id", how="left")
        .join(_bad_subjects(medium, cut), on="subject_id", how="left")
        .fill_null(False)
    )
    rates = subjects.group_by("early").agg(pl.col("bad").mean())
    rate = dict(zip(rates["early"], rates["bad"], strict=True))
    assert rate[True] > 3 * rate[False]


def test_related_party_distress_predicts_entity_default(medium: dict[str, pl.DataFrame]) -> None:
    rel = medium["relation"]
    reps = rel.filter((pl.col("role") == "legal_representative") & pl.col("valid_to").is_null())
    public = medium["public_record"].filter(
        (pl.col("subject_type") == "person")
        & pl.col("kind").is_in(["court_judgment", "enforcement", "dishonest_debtor"])
    )
    distressed = pl.concat(
        [
            medium["default_event"].filter(pl.col("subject_type") == "person").select("subject_id"),
            public.select("subject_id"),
        ]
    ).unique()
    borrowers = medium["credit_account"].filter(pl.col("subject_type") == "entity")
    entities = (
        reps.select("uscc", "resident_id")
        .join(borrowers.select(pl.col("subject_id").alias("uscc")).unique(), on="uscc", how="semi")
        .with_columns(
            pl.col("resident_id").is_in(distressed["subject_id"].implode()).alias("rep_bad")
        )
        .join(_bad_subjects(medium), left_on="uscc", right_on="subject_id", how="left")
        .fill_null(False)
    )
    rates = entities.group_by("rep_bad").agg(pl.col("bad").mean(), pl.len())
    rate = dict(zip(rates["rep_bad"], rates["bad"], strict=True))
    assert rate[True] > 2 * rate[False]


def test_card_utilisation_rises_with_risk(medium: dict[str, pl.DataFrame]) -> None:
    cards = medium["credit_account"].filter(pl.col("product") == "credit_card")
    usage = (
        medium["repayment"]
        .join(
            cards.select("source", "account_id", "subject_id", "credit_limit"),
            on=["source", "account_id"],
        )
        .group_by("subject_id")
        .agg((pl.col("balance") / pl.col("credit_limit")).mean().alias("util"))
        .join(_bad_subjects(medium), on="subject_id", how="left")
        .fill_null(False)
    )
    means = usage.group_by("bad").agg(pl.col("util").mean())
    util = dict(zip(means["bad"], means["util"], strict=True))
    assert util[True] > util[False] + 0.15


def test_public_records_and_inquiries(medium: dict[str, pl.DataFrame]) -> None:
    pub = medium["public_record"]
    kinds = set(pub["kind"])
    assert kinds == set(TABLES["public_record"].field("kind").values)
    entity_kinds = pub.filter(pl.col("subject_type") == "entity")["kind"].value_counts()
    top = entity_kinds.sort("count", descending=True)["kind"].head(3).to_list()
    assert {"business_abnormal", "administrative_penalty"} <= set(top)
    assert not pub.select("source", "record_id").is_duplicated().any()
    assert 0 < pub["amount"].null_count() < pub.height
    assert 0 < (pub["status"] == "cleared").sum() < pub.height

    inq = medium["credit_inquiry"]
    lag = (inq["reported_at"] - inq["inquired_at"]).dt.total_seconds()
    assert lag.min() >= 0 and lag.max() <= 86_400  # type: ignore[operator]
    # Multi-platform borrowing: 6+ loan applications to distinct lenders within 30 days.
    apps = inq.filter(
        (pl.col("subject_type") == "person") & (pl.col("purpose") == "loan_approval")
    ).sort("subject_id", "inquired_at")
    windows = apps.rolling("inquired_at", period="30d", group_by="subject_id").agg(
        pl.col("source").n_unique().alias("lenders")
    )
    bursting = windows.filter(pl.col("lenders") >= 6)["subject_id"].n_unique()
    share = bursting / medium["natural_person"].height
    assert 0.015 < share < 0.06


# -- file format ------------------------------------------------------------------------------


def test_to_file_frame_formats() -> None:
    frame = pl.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "period": [date(2024, 3, 1), date(2025, 12, 1)],
            "balance": [1234.5, 0.0],
            "amount_due": [0.1, 12.0],
            "amount_paid": [1e9, 3.21],
            "overdue_days": pl.Series([0, 45], dtype=pl.Int32),
            "overdue_amount": [None, 7.05],
            "status": ["normal", "overdue"],
            "source": ["P0001", "P0002"],
            "reported_at": [datetime(2024, 4, 10, 8, 5, 9), datetime(2026, 1, 5, 0, 0, 0)],
        }
    )
    text = to_file_frame("repayment", frame)
    assert all(dtype == pl.String for dtype in text.dtypes)
    assert text.row(0) == (
        "A1", "2024-03", "1234.50", "0.10", "1000000000.00", "0", None, "normal", "P0001",
        "2024-04-10T08:05:09",
    )  # fmt: skip
    assert text.row(1)[1:7] == ("2025-12", "0.00", "12.00", "3.21", "45", "7.05")
    assert to_file_frame("repayment", text).equals(text)  # strings pass through
    shares = pl.DataFrame(
        {
            "uscc": ["X"] * 4,
            "resident_id": ["Y"] * 4,
            "role": ["shareholder"] * 3 + ["executive"],
            "share": [1.0, 0.25, 0.3333, None],
            "valid_from": [date(2020, 1, 31)] * 4,
            "valid_to": [None, None, date(2021, 2, 1), None],
            "source": ["AMR-33"] * 4,
            "reported_at": [datetime(2024, 1, 1)] * 4,
        }
    )
    text = to_file_frame("relation", shares)
    assert text["share"].to_list() == ["1", "0.25", "0.3333", None]
    assert text["valid_to"].to_list() == [None, None, "2021-02-01", None]


def test_write_files_csv_round_trip(
    tmp_path: Path,
    small: dict[str, pl.DataFrame],
    faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]],
) -> None:
    paths = write_files(small, tmp_path / "clean", "csv")
    assert [p.name for p in paths] == [f"{t}.csv" for t in TABLE_ORDER]
    for table, path in zip(TABLE_ORDER, paths, strict=True):
        back = pl.read_csv(path, infer_schema=False)
        assert back.equals(to_file_frame(table, small[table])), table
        lines = path.read_text().splitlines()
        assert len(lines) == small[table].height + 1
    manifest = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert manifest["faults"] == []
    assert manifest["tables"] == [
        {"table": t, "file": f"{t}.csv", "rows": small[t].height} for t in TABLE_ORDER
    ]

    frames, faults = faulty
    paths = write_files(frames, tmp_path / "dirty", "csv", faults)
    manifest = json.loads((tmp_path / "dirty" / "manifest.json").read_text())
    assert [InjectedFault(**f) for f in manifest["faults"]] == faults
    file_lines = {p.stem: p.read_text().splitlines() for p in paths}
    for table, path in zip(TABLE_ORDER, paths, strict=True):
        assert pl.read_csv(path, infer_schema=False).equals(frames[table]), table
    for fault in faults:
        row = frames[fault.table].row(fault.line - 2)
        header, line = file_lines[fault.table][0], file_lines[fault.table][fault.line - 1]
        parsed = pl.read_csv(
            (header + "\n" + line).encode(),
            infer_schema=False,
        )
        assert parsed.row(0) == row


def test_write_files_parquet_keeps_types(tmp_path: Path, small: dict[str, pl.DataFrame]) -> None:
    paths = write_files(small, tmp_path, "parquet")
    for table, path in zip(TABLE_ORDER, paths, strict=True):
        assert path.name == f"{table}.parquet"
        assert pl.read_parquet(path).equals(small[table]), table


# -- faults -----------------------------------------------------------------------------------


def _applicable(table: str) -> set[str]:
    spec = TABLES[table]
    kinds = {f.kind for f in spec.fields}
    out = {"invalid_enum", "duplicate", "conflicting_version", "restatement"}
    if kinds & {FieldKind.USCC, FieldKind.RESIDENT_ID, FieldKind.SUBJECT_ID}:
        out.add("invalid_identifier")
    if any(f.kind in (FieldKind.DATE, FieldKind.MONTH) and f.required for f in spec.fields):
        out.add("invalid_date")
    if spec.event_dates:
        out.add("date_after_report")
    if FieldKind.AMOUNT in kinds:
        out.add("invalid_amount")
    if table == "relation" or table in SUBJECT_TABLES:
        out.add("unknown_subject")
    return out


def test_faults_are_appended_with_their_lines(
    small: dict[str, pl.DataFrame], faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]]
) -> None:
    frames, faults = faulty
    assert list(frames) == list(TABLE_ORDER)
    for table in TABLE_ORDER:
        original = to_file_frame(table, small[table])
        frame = frames[table]
        assert all(dtype == pl.String for dtype in frame.dtypes)
        assert frame.head(original.height).equals(original)  # originals untouched
        lines = sorted(f.line for f in faults if f.table == table)
        extra = frame.height - original.height
        assert lines == list(range(original.height + 2, original.height + 2 + extra))
        assert extra >= max(0.04 * original.height, 3 * len(_applicable(table)))
        kinds = {f.kind for f in faults if f.table == table}
        assert kinds == _applicable(table), table
        for kind in kinds:
            assert sum(f.kind == kind and f.table == table for f in faults) >= 3
    assert {f.kind for f in faults} == set(FAULT_KINDS)


def test_faults_are_what_they_claim(
    small: dict[str, pl.DataFrame], faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]]
) -> None:
    frames, faults = faulty
    known = set(small["legal_entity"]["uscc"])
    for fault in faults:
        spec = TABLES[fault.table]
        frame = frames[fault.table]
        original = frame.head(small[fault.table].height)
        row = dict(zip(frame.columns, frame.row(fault.line - 2), strict=True))
        key = {name: row[name] for name in spec.natural_key}
        same_key = original.filter(
            pl.all_horizontal(pl.col(k) == v for k, v in key.items() if v is not None)
        )
        value = row[fault.field] if fault.field else None
        if fault.kind == "invalid_identifier":
            assert fault.field is not None and value is not None
            if fault.field == "uscc" or row.get("subject_type") == "entity":
                assert uscc_rejection(value) == "check_character"
            else:
                with pytest.raises(ValueError, match="check_character"):
                    validate_resident_id(value, today=SMALL.end_date)
        elif fault.kind == "invalid_date":
            assert value is not None and fault.field is not None
            fmt = "%Y-%m" if spec.field(fault.field).kind is FieldKind.MONTH else "%Y-%m-%d"
            with pytest.raises(ValueError):
                datetime.strptime(value, fmt)
        elif fault.kind == "date_after_report":
            assert fault.field in spec.event_dates and value is not None
            reported = datetime.fromisoformat(row["reported_at"])
            if spec.field(fault.field).kind is FieldKind.MONTH:
                assert datetime.strptime(value, "%Y-%m") > reported
            else:
                assert datetime.fromisoformat(value) >= reported + timedelta(days=39)
        elif fault.kind == "invalid_enum":
            assert value == "not_a_value"
        elif fault.kind == "invalid_amount":
            assert value == "-100.00"
        elif fault.kind == "unknown_subject":
            assert value is not None
            validate_uscc(value)
            assert value not in known
        elif fault.kind == "duplicate":
            assert fault.field is None
            assert same_key.height == 1 and same_key.row(0) == tuple(row.values())
        elif fault.kind == "conflicting_version":
            assert fault.field is None and same_key.height == 1
            assert same_key["reported_at"][0] == row["reported_at"]
            assert same_key.row(0) != tuple(row.values())
        elif fault.kind == "restatement":
            assert fault.field is None and same_key.height == 1
            before = datetime.fromisoformat(same_key["reported_at"][0])
            assert datetime.fromisoformat(row["reported_at"]) == before + timedelta(days=1)
            changed = [c for c in frame.columns if same_key[c][0] != row[c]]
            assert len(changed) == 2  # reported_at and one content field
        assert fault.expected == ("accepted" if fault.kind == "restatement" else fault.kind)


def test_version_faults_use_distinct_unique_source_rows(
    faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]],
) -> None:
    frames, faults = faulty
    for table in TABLE_ORDER:
        picked = [
            f.line - 2
            for f in faults
            if f.table == table and f.kind in ("duplicate", "conflicting_version", "restatement")
        ]
        key = list(TABLES[table].natural_key)
        keys = frames[table][picked].select(key)
        assert not keys.is_duplicated().any(), table


def test_fault_injection_is_deterministic(
    small: dict[str, pl.DataFrame], faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]]
) -> None:
    frames, faults = inject_faults(small, 0.05, seed=3)
    assert faults == faulty[1]
    for table in TABLE_ORDER:
        assert frames[table].equals(faulty[0][table])
    _, other = inject_faults(small, 0.05, seed=4)
    assert other != faults
    clean, none = inject_faults(small, 0.0, seed=3)
    assert none == []
    for table in TABLE_ORDER:
        assert clean[table].equals(to_file_frame(table, small[table]))


def test_fault_expectations_are_known_reason_codes(
    faulty: tuple[dict[str, pl.DataFrame], list[InjectedFault]],
) -> None:
    validation = pytest.importorskip("records.validation")
    allowed = set(validation.REASONS) | {"duplicate", "accepted"}
    assert {f.expected for f in faulty[1]} <= allowed
