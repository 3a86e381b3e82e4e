"""The served risk model: PD, score, grade, reasons and thin-file marker for feature rows.

Input rows are catalog-ordered float64 vectors with NaN for absent features: the layout of
:class:`features.store.FeatureVector` and of :func:`models.data.feature_matrix`. A single
row is predicted with ``num_threads=1`` passed at predict time: LightGBM's default thread
pool costs 13–16 ms p99 spikes on one row (measured on this machine), against ~42 µs p50.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.reasons import Explanation, Reason, ReasonCoder, thin_file_mask
from models.registry import CATALOG_KIND, LoadedModel, ModelRegistry, RegistryError
from models.scorecard import grades, scores

__all__ = ["Decision", "RiskModel"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Decision:
    probability_of_default: float
    score: int
    grade: str
    reasons: tuple[Reason, ...]
    thin_file: bool
    model_version: str


class RiskModel:
    """A verified registry model, ready to score."""

    def __init__(self, loaded: LoadedModel, *, batch_threads: int = 2) -> None:
        if loaded.kind != CATALOG_KIND:
            # A tabular model scores an agency's own columns, not the catalog's features.
            raise RegistryError(
                f"model {loaded.version} is a {loaded.kind} model, not one of the feature "
                "catalog: it cannot score subjects"
            )
        self.loaded = loaded
        self.version = loaded.version
        self.booster = loaded.booster
        self.calibrator = loaded.calibrator
        self.scorecard = loaded.scorecard
        self.feature_names: tuple[str, ...] = tuple(loaded.manifest["features"])
        self.batch_threads = batch_threads
        self._coder = ReasonCoder(self.booster)

    @classmethod
    def load(
        cls, data_dir: Path, version: str | None = None, *, batch_threads: int = 2
    ) -> RiskModel:
        """The given (default: current) version from ``<data_dir>/models``."""
        return cls(ModelRegistry(data_dir).load(version), batch_threads=batch_threads)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.loaded.manifest

    def _rows(self, matrix: npt.ArrayLike) -> F64:
        rows = np.asarray(matrix, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected rows of {len(self.feature_names)} features in catalog order, "
                f"got shape {rows.shape}"
            )
        return rows

    def _threads(self, rows: F64) -> int:
        return 1 if rows.shape[0] == 1 else self.batch_threads

    def raw_score(self, matrix: npt.ArrayLike) -> F64:
        """LightGBM's raw score (log-odds margin) of each row."""
        rows = self._rows(matrix)
        raw: F64 = self.booster.predict(rows, raw_score=True, num_threads=self._threads(rows))
        return raw

    def predict(self, matrix: npt.ArrayLike) -> F64:
        """Calibrated 12-month probability of default of each row."""
        return self.calibrator.predict(self.raw_score(matrix))

    def decide(self, vector: npt.ArrayLike, *, explain: bool = True) -> Decision:
        """The decision for one subject's feature vector."""
        return self.decide_batch(self._rows(vector), explain=explain)[0]

    def decide_batch(self, matrix: npt.ArrayLike, *, explain: bool = True) -> list[Decision]:
        """Decisions for many rows; reasons (TreeSHAP) only when ``explain``."""
        rows = self._rows(matrix)
        pd = self.predict(rows)
        points = scores(pd, self.scorecard)
        letters = grades(pd, self.scorecard)
        if explain:
            explanations = self._coder.explain(rows, num_threads=self._threads(rows))
        else:
            explanations = [Explanation((), bool(t)) for t in thin_file_mask(rows)]
        return [
            Decision(
                probability_of_default=float(pd[i]),
                score=int(points[i]),
                grade=letters[i],
                reasons=explanations[i].reasons,
                thin_file=explanations[i].thin_file,
                model_version=self.version,
            )
            for i in range(rows.shape[0])
        ]
