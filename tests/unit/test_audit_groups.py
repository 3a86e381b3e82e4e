"""The coarse groups a decision-log entry carries for the fairness view."""

from __future__ import annotations

from datetime import date

from conftest import make_resident_id, make_uscc

from audit.entries import age_band, subject_groups


def test_age_bands() -> None:
    on = date(2026, 11, 26)
    assert age_band(date(2009, 11, 27), on) == "under 18"
    assert age_band(date(2008, 11, 26), on) == "18-29"
    assert age_band(date(1997, 1, 1), on) == "18-29"
    assert age_band(date(1996, 11, 26), on) == "30-39"
    assert age_band(date(1985, 3, 15), on) == "40-49"
    assert age_band(date(1957, 11, 26), on) == "60-69"
    assert age_band(date(1956, 11, 26), on) == "70+"


def test_groups_of_an_entity_and_a_person() -> None:
    on = date(2026, 11, 26)
    assert subject_groups("entity", make_uscc(1, region="440305"), on) == {"region": "44"}
    person = make_resident_id(7, region="330106", birth="19850315")
    assert subject_groups("person", person, on) == {"region": "33", "age_band": "40-49"}
    gendered = subject_groups("person", person, on, with_gender=True)
    assert gendered["gender"] in ("male", "female")
