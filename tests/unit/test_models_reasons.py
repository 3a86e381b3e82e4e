"""Reason selection and the thin-file rule, on hand-made contributions and rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.catalog import CATALOG, feature_names
from models.reasons import MAX_REASONS, ReasonCoder, thin_file_mask

NAMES = list(feature_names())


class StubBooster:
    """Stands in for a LightGBM booster: names its features, returns fixed contributions."""

    def __init__(self, contributions: np.ndarray) -> None:
        self._contributions = contributions

    def feature_name(self) -> list[str]:
        return NAMES

    def predict(self, rows: np.ndarray, **kwargs: object) -> np.ndarray:
        assert kwargs.get("pred_contrib") is True
        bias = np.full((rows.shape[0], 1), -4.0)
        return np.hstack([np.tile(self._contributions, (rows.shape[0], 1)), bias])


def index(name: str) -> int:
    return NAMES.index(name)


def full_file() -> np.ndarray:
    """A row with history: 24 account-months, one inquiry, other values present."""
    row = np.ones(len(NAMES))
    row[index("rep_months_reported")] = 24
    return row


def test_top_four_positive_contributions_largest_first() -> None:
    contributions = np.zeros(len(NAMES))
    for name, value in [
        ("rep_utilisation", 0.5),
        ("rep_worst_overdue_days_12m", 0.9),
        ("inq_count_30d", 0.2),
        ("ent_age_months", -0.7),
        ("pub_enforcement_active", 0.3),
        ("rp_sibling_defaults", 0.1),
        ("rep_total_balance", 0.05),
    ]:
        contributions[index(name)] = value
    coder = ReasonCoder(StubBooster(contributions))
    reasons = coder.reasons(contributions, full_file())
    assert [r.feature for r in reasons] == [
        "rep_worst_overdue_days_12m",
        "rep_utilisation",
        "pub_enforcement_active",
        "inq_count_30d",
    ]
    specs = {spec.name: spec for spec in CATALOG}
    for reason in reasons:
        assert reason.code == specs[reason.feature].reason_code
        assert reason.description == specs[reason.feature].reason_text
        assert reason.contribution == contributions[index(reason.feature)]
        assert reason.value == 1.0


def test_an_inquiry_feature_outside_the_four_is_added_fifth() -> None:
    contributions = np.zeros(len(NAMES))
    for rank, name in enumerate(
        ["rep_utilisation", "rep_current_overdue_days", "pub_enforcement_active", "rep_total_limit"]
    ):
        contributions[index(name)] = 1.0 - rank / 10
    contributions[index("inq_platforms_90d")] = 0.01
    contributions[index("inq_count_7d")] = 0.02
    coder = ReasonCoder(StubBooster(contributions))
    reasons = coder.reasons(contributions, full_file())
    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1].feature == "inq_count_7d"  # the largest inquiry contribution
    assert [r.contribution for r in reasons] == sorted(
        (r.contribution for r in reasons), reverse=True
    )
    # No fifth reason when an inquiry feature is already among the four, or none is positive.
    contributions[index("inq_count_7d")] = 2.0
    assert len(coder.reasons(contributions, full_file())) == MAX_REASONS
    contributions[index("inq_count_7d")] = contributions[index("inq_platforms_90d")] = -0.1
    assert len(coder.reasons(contributions, full_file())) == MAX_REASONS


def test_absent_features_and_non_positive_contributions_are_no_reason() -> None:
    contributions = np.zeros(len(NAMES))
    contributions[index("rp_controlled_abnormal")] = 3.0  # a person-only feature
    contributions[index("rep_utilisation")] = 0.4
    row = full_file()
    row[index("rp_controlled_abnormal")] = np.nan  # the subject is an entity
    coder = ReasonCoder(StubBooster(contributions))
    assert [r.feature for r in coder.reasons(contributions, row)] == ["rep_utilisation"]
    assert coder.reasons(np.zeros(len(NAMES)), row) == ()


def test_ties_keep_catalog_order() -> None:
    contributions = np.zeros(len(NAMES))
    contributions[[index("rp_sibling_defaults"), index("rep_utilisation")]] = 0.5
    coder = ReasonCoder(StubBooster(contributions))
    assert [r.feature for r in coder.reasons(contributions, full_file())] == [
        "rep_utilisation",
        "rp_sibling_defaults",
    ]


def thin_row() -> np.ndarray:
    row = np.full(len(NAMES), np.nan)
    for name in NAMES:
        if name.startswith(("inq_",)) or name.endswith("_active"):
            row[index(name)] = 0.0
    row[index("rep_months_reported")] = 5
    return row


def test_thin_file_rule() -> None:
    rows = [thin_row()]
    no_history = thin_row()
    no_history[index("rep_months_reported")] = np.nan
    rows.append(no_history)
    enough = thin_row()
    enough[index("rep_months_reported")] = 6
    rows.append(enough)
    public = thin_row()
    public[index("pub_tax_violation_months_since")] = 30  # cleared, but within retention
    rows.append(public)
    active = thin_row()
    active[index("pub_enforcement_active")] = 1
    rows.append(active)
    inquiry = thin_row()
    inquiry[index("inq_count_90d")] = 1
    rows.append(inquiry)
    assert thin_file_mask(np.vstack(rows)).tolist() == [True, True, False, False, False, False]


def test_thin_files_get_no_reasons_and_no_treeshap() -> None:
    contributions = np.zeros(len(NAMES))
    contributions[index("rep_utilisation")] = 1.0
    coder = ReasonCoder(StubBooster(contributions))
    thin, full = coder.explain(np.vstack([thin_row(), full_file()]))
    assert thin.thin_file and thin.reasons == ()
    assert not full.thin_file and [r.feature for r in full.reasons] == ["rep_utilisation"]


def test_a_model_with_other_features_is_refused() -> None:
    class Other(StubBooster):
        def feature_name(self) -> list[str]:
            return NAMES[::-1]

    with pytest.raises(ValueError, match="catalog order"):
        ReasonCoder(Other(np.zeros(len(NAMES))))


def reference_reasons(
    coder: ReasonCoder, contributions: np.ndarray, values: np.ndarray
) -> list[int]:
    """The selection rule stated row by row (the first implementation): largest positive
    contributions of present features, ties in catalog order, at most four, then the
    largest inquiry feature if none made the four."""
    inquiry = {i for i, spec in enumerate(coder.specs) if spec.group == "inquiry"}
    positive = [i for i in range(len(values)) if contributions[i] > 0 and not np.isnan(values[i])]
    order = sorted(positive, key=lambda i: (-contributions[i], i))
    chosen = order[:MAX_REASONS]
    if not any(i in inquiry for i in chosen):
        chosen += [i for i in order[MAX_REASONS:] if i in inquiry][:1]
    return chosen


# Few distinct values, so that ties, zeros and negatives are common.
_contribution = st.sampled_from([-0.5, -1e-12, 0.0, 1e-12, 0.1, 0.1, 0.3, 0.3, 0.7, 2.0])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.lists(_contribution, min_size=len(NAMES), max_size=len(NAMES)),
            st.lists(st.booleans(), min_size=len(NAMES), max_size=len(NAMES)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_chunk_selection_equals_the_row_by_row_rule(
    rows: list[tuple[list[float], list[bool]]],
) -> None:
    contributions = np.array([c for c, _ in rows])
    values = np.where(np.array([absent for _, absent in rows]), np.nan, 1.0)
    coder = ReasonCoder(StubBooster(contributions[0]))
    chosen = coder.chosen(contributions, values)
    for row in range(len(rows)):
        expected = reference_reasons(coder, contributions[row], values[row])
        assert [int(i) for i in chosen[row] if i >= 0] == expected
        assert [r.feature for r in coder.reasons(contributions[row], values[row])] == [
            NAMES[i] for i in expected
        ]
