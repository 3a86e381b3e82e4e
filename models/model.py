"""The served risk model: PD, score, grade, reasons and thin-file marker for feature rows.

Input rows are catalog-ordered float64 vectors with NaN for absent features: the layout of
:class:`features.store.FeatureVector` and of :func:`models.data.feature_matrix`. A single
row is predicted with ``num_threads=1`` passed at predict time: LightGBM's default thread
pool costs 13–16 ms p99 spikes on one row (measured on this machine), against ~42 µs p50.

When the version has a verified compiled forest (``credit-risk compile``, see
:mod:`models.compiled`), a single row's raw score comes from it (~6 µs instead of ~20–40 µs,
equal to LightGBM's to 1e-9); batches, and the reasons (TreeSHAP ``pred_contrib``), stay
with LightGBM. ``engine`` says which scores single rows, ``engine_reason`` why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.compiled import ENGINE_LIGHTGBM, ENGINE_LLEAVES, CompiledForest, load_compiled
from models.reasons import Explanation, Reason, ReasonCoder, thin_file_mask
from models.registry import CATALOG_KIND, COMPILED_DIR, LoadedModel, ModelRegistry, RegistryError
from models.scorecard import grades, scores

__all__ = ["Decision", "RiskModel"]

F64 = npt.NDArray[np.float64]
_log = logging.getLogger(__name__)


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

    def __init__(
        self, loaded: LoadedModel, *, batch_threads: int = 2, compiled: bool = True
    ) -> None:
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
        self._forest: CompiledForest | None = None
        self.engine_reason = "compiled forest not requested"
        if compiled:
            self._forest, self.engine_reason = load_compiled(loaded)
            if self._forest is None and (loaded.path / COMPILED_DIR).exists():
                _log.warning(
                    "model %s: %s; scoring with LightGBM", self.version, self.engine_reason
                )

    @classmethod
    def load(
        cls,
        data_dir: Path,
        version: str | None = None,
        *,
        batch_threads: int = 2,
        compiled: bool = True,
    ) -> RiskModel:
        """The given (default: current) version from ``<data_dir>/models``."""
        loaded = ModelRegistry(data_dir).load(version)
        return cls(loaded, batch_threads=batch_threads, compiled=compiled)

    @property
    def engine(self) -> str:
        """What scores a single row: ``"lleaves"`` (a verified compiled forest) or
        ``"lightgbm"``."""
        return ENGINE_LLEAVES if self._forest is not None else ENGINE_LIGHTGBM

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
        """LightGBM's raw score (log-odds margin) of each row; one row from the compiled
        forest when there is a verified one."""
        rows = self._rows(matrix)
        if self._forest is not None and rows.shape[0] == 1:
            return self._forest.raw_score(rows)
        raw: F64 = self.booster.predict(rows, raw_score=True, num_threads=self._threads(rows))
        return raw

    def predict(self, matrix: npt.ArrayLike) -> F64:
        """Calibrated 12-month probability of default of each row."""
        return self.calibrator.predict(self.raw_score(matrix))

    def explain(
        self, matrix: npt.ArrayLike, *, num_threads: int | None = None
    ) -> list[Explanation]:
        """Reasons and thin-file markers of each row (TreeSHAP; the costly part)."""
        rows = self._rows(matrix)
        threads = self._threads(rows) if num_threads is None else num_threads
        return self._coder.explain(rows, num_threads=threads)

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
                probability_of_default=probability,
                score=points_of_row,
                grade=letter,
                reasons=explanation.reasons,
                thin_file=explanation.thin_file,
                model_version=self.version,
            )
            for probability, points_of_row, letter, explanation in zip(
                pd.tolist(), points.tolist(), letters, explanations, strict=True
            )
        ]
