"""A registered model's forest compiled to machine code with lleaves, checked against LightGBM.

LightGBM's own ``predict`` costs ~20–40 µs for one row from Python; the same forest compiled
by lleaves (LLVM) answers in ~6 µs with the same raw score (differences ~1e-14: only the
order of the floating-point additions differs). LightGBM stays the reference: a compiled
forest is served only after its raw scores have been compared with LightGBM's
``predict(raw_score=True, num_threads=1)`` on sample rows that exercise every split of the
model (:func:`sample_rows`) and found equal to :data:`TOLERANCE`.

What lleaves writes (its ``compile(cache=...)``) is an ELF *relocatable object* compiled for
the host CPU (name and features), not a shared library: it is loaded by llvmlite's MCJIT,
never by ``dlopen``. It is stored beside the model as ``compiled/forest.o`` with
``compiled/compiled.json`` (see :func:`compile_version`). Loading (:func:`load_compiled`)
checks, before a single byte of it is executed: the sha256 of the object and of the
``model.txt`` it was compiled from, the recorded equivalence, the lleaves and llvmlite
versions and the host CPU it was compiled for (machine code for another CPU could crash the
process with an illegal instruction). After loading it re-checks a few hundred sample rows
against LightGBM. Any failure gives ``None`` and a reason: the caller serves LightGBM.

The hashes catch corruption and a stale or swapped file, not an attacker who can write the
registry directory (who could rewrite ``compiled.json`` too): the registry must be writable
only by the service's operators, as for every other artifact.

lleaves is imported lazily: without it everything here reports "unavailable" and the
service scores with LightGBM.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from models.registry import (
    COMPILED_DIR,
    MODEL_FILE,
    LoadedModel,
    ModelRegistry,
    sha256_hex,
)

__all__ = [
    "COMPILED_OBJECT",
    "COMPILED_RECORD",
    "ENGINE_LIGHTGBM",
    "ENGINE_LLEAVES",
    "TOLERANCE",
    "CompileError",
    "CompileResult",
    "CompiledForest",
    "Equivalence",
    "check_equivalence",
    "compile_object",
    "compile_version",
    "host_target",
    "lleaves_versions",
    "load_compiled",
    "sample_rows",
]

F64 = npt.NDArray[np.float64]

ENGINE_LLEAVES = "lleaves"
ENGINE_LIGHTGBM = "lightgbm"
COMPILED_OBJECT = "forest.o"
COMPILED_RECORD = "compiled.json"
RECORD_FORMAT = 1
TOLERANCE = 1e-9  # absolute, on the raw score (log-odds margin)
# LightGBM's kZeroThreshold: predict() turns every input value with |x| <= this into 0.0
# before the trees see it (dense rows go through a sparse conversion); lleaves compares the
# value itself, so -1e-35 went the other way at a -1.0000000180025095e-35 split.
ZERO_THRESHOLD = 1.0000000180025095e-35
SAMPLE_ROWS = 10_000
SAMPLE_SEED = 20_261_126
LOAD_CHECK_ROWS = 256  # re-checked against LightGBM every time a compiled forest is loaded
SINGLE_ROW_CHECKS = 200  # of the sample rows, also compared one row per call
# lleaves' defaults; fblocksize = number of trees (no cache blocking) measured no faster for
# one row on the 122-tree benchmark model (5.9 vs 6.3 µs p50, within noise).
COMPILE_OPTIONS: dict[str, Any] = {
    "fblocksize": 34,
    "finline": True,
    "fcodemodel": "large",
    "use_fp64": True,
}


class CompileError(RuntimeError):
    """The forest cannot be compiled, or the compiled forest differs from LightGBM."""


def lleaves_versions() -> dict[str, str]:
    """Installed lleaves and llvmlite versions; raises ``CompileError`` without lleaves."""
    try:
        return {"lleaves": metadata.version("lleaves"), "llvmlite": metadata.version("llvmlite")}
    except metadata.PackageNotFoundError as err:
        raise CompileError(f"{err.name} is not installed: the compiled engine is off") from None


def host_target() -> dict[str, str]:
    """The CPU lleaves compiles for on this host (its defaults): machine code compiled for
    one CPU may not run on another."""
    import llvmlite.binding as llvm

    try:
        features = str(llvm.get_host_cpu_features().flatten())
    except RuntimeError:  # lleaves then compiles for no extra features
        features = ""
    return {
        "triple": str(llvm.get_process_triple()),
        "cpu": str(llvm.get_host_cpu_name()),
        "features": features,
    }


class CompiledForest:
    """A forest compiled by lleaves, returning LightGBM raw scores."""

    def __init__(self, model: Any) -> None:
        self._model = model  # lleaves.Model, compiled; keeps the machine code alive
        self.num_features = int(model.num_feature())

    @classmethod
    def from_bytes(cls, model_text: bytes, object_code: bytes) -> CompiledForest:
        """Load compiled code from bytes the caller has verified. The bytes go to a private
        temporary directory first, so what runs is exactly what was checked."""
        import lleaves

        with tempfile.TemporaryDirectory(prefix="lleaves-") as tmp:
            model_path, object_path = Path(tmp) / MODEL_FILE, Path(tmp) / COMPILED_OBJECT
            model_path.write_bytes(model_text)
            object_path.write_bytes(object_code)
            model = lleaves.Model(model_file=str(model_path))
            # The object exists, so lleaves loads it instead of compiling (options unused).
            model.compile(cache=str(object_path), raw_score=True, **COMPILE_OPTIONS)
        return cls(model)

    def raw_score(self, matrix: npt.ArrayLike, *, num_threads: int = 1) -> F64:
        """Raw scores of C-ordered float64 rows (one thread for one row)."""
        rows = np.asarray(matrix, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows.reshape(1, -1)
        threads = 1 if rows.shape[0] == 1 else num_threads
        # LightGBM reads |x| <= its kZeroThreshold as 0.0; lleaves does not. NaN stays NaN.
        tiny = np.abs(rows) <= ZERO_THRESHOLD
        if np.count_nonzero(tiny):
            rows = np.where(tiny, 0.0, rows)
        out: F64 = self._model.predict(np.ascontiguousarray(rows), n_jobs=threads)
        return out


def compile_object(model_text: bytes, *, options: dict[str, Any] | None = None) -> bytes:
    """Compile a LightGBM text model (raw score) and return lleaves' object code."""
    import lleaves

    with tempfile.TemporaryDirectory(prefix="lleaves-") as tmp:
        model_path, object_path = Path(tmp) / MODEL_FILE, Path(tmp) / COMPILED_OBJECT
        model_path.write_bytes(model_text)
        model = lleaves.Model(model_file=str(model_path))
        model.compile(cache=str(object_path), raw_score=True, **(options or COMPILE_OPTIONS))
        if not object_path.is_file():
            raise CompileError("lleaves wrote no object code")
        return object_path.read_bytes()


# -- sample rows --------------------------------------------------------------------------


def _split_points(booster: Any) -> tuple[list[set[float]], list[set[int]]]:
    """Per feature: the numeric thresholds and the categories named by the model's splits."""
    n = int(booster.num_feature())
    numeric: list[set[float]] = [set() for _ in range(n)]
    categories: list[set[int]] = [set() for _ in range(n)]
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        feature = int(node["split_feature"])
        if node["decision_type"] == "==":
            categories[feature].update(int(v) for v in str(node["threshold"]).split("||"))
        else:
            numeric[feature].add(float(node["threshold"]))
        stack.extend((node["left_child"], node["right_child"]))
    return numeric, categories


# a numeric value in (low, high]; categories allowed (None: any) and excluded
_Constraint = tuple[float, float, frozenset[int] | None, frozenset[int]]


def _leaf_paths(
    booster: Any,
) -> list[dict[int, _Constraint]]:
    """Per leaf of every tree, the constraints on the features along its path:
    ``feature -> (low, high, allowed categories or None, excluded categories)``, a numeric
    value in ``(low, high]``."""
    paths: list[dict[int, _Constraint]] = []
    for tree in booster.dump_model()["tree_info"]:
        stack: list[tuple[dict[str, Any], dict[int, _Constraint]]] = [(tree["tree_structure"], {})]
        while stack:
            node, bounds = stack.pop()
            if "split_feature" not in node:
                paths.append(bounds)
                continue
            feature = int(node["split_feature"])
            low, high, allowed, excluded = bounds.get(
                feature, (-math.inf, math.inf, None, frozenset())
            )
            left: _Constraint
            right: _Constraint
            if node["decision_type"] == "==":
                cats = frozenset(int(v) for v in str(node["threshold"]).split("||"))
                left = (low, high, cats if allowed is None else allowed & cats, excluded)
                right = (low, high, allowed, excluded | cats)
            else:
                threshold = float(node["threshold"])
                left = (low, min(high, threshold), allowed, excluded)
                right = (max(low, threshold), high, allowed, excluded)
            stack.append((node["left_child"], bounds | {feature: left}))
            stack.append((node["right_child"], bounds | {feature: right}))
    return paths


def _path_value(
    constraint: _Constraint,
    categories: set[int],
    rng: np.random.Generator,
) -> float:
    low, high, allowed, excluded = constraint
    if allowed is not None or excluded:
        choices = sorted((allowed if allowed is not None else set(categories)) - excluded)
        if choices:
            return float(rng.choice(choices))
        return float(max(categories | excluded, default=0) + 1)  # a category no split names
    if math.isfinite(high):
        if math.isfinite(low) and rng.random() < 0.5:
            return float(rng.uniform(low, high)) if low < high else high
        return high  # exactly the threshold: the ``<=`` boundary
    if math.isfinite(low):
        return (
            float(np.nextafter(low, math.inf)) if rng.random() < 0.5 else low + max(1.0, abs(low))
        )
    return 0.0


def sample_rows(
    booster: Any, rows: int = SAMPLE_ROWS, *, seed: int = SAMPLE_SEED, nan_share: float = 0.15
) -> F64:
    """Rows in the model's own feature space that exercise every branch of every split:
    ``rows`` random rows, then one row per leaf of the forest that follows the leaf's path.

    In a random row a numeric feature's value falls uniformly within a randomly chosen
    interval between two consecutive thresholds of the model's splits on it (or below the
    lowest / above the highest), is exactly a threshold (the ``<=`` boundary) with 10 %
    probability, and is also 0.0 (LightGBM's "zero" missing type), ±inf or NaN at times. A
    categorical feature takes a category its splits name, or one they do not (unseen,
    negative, fractional). The first two rows are all NaN and all zero. A leaf's row is a
    random row with the features on its path set to satisfy the path (often exactly at a
    threshold). Deterministic for a seed."""
    if rows < 2:
        raise ValueError("sample at least two rows")
    rng = np.random.default_rng(seed)
    numeric, categories = _split_points(booster)
    out = np.empty((rows, len(numeric)), dtype=np.float64)
    for j, (thresholds, cats) in enumerate(zip(numeric, categories, strict=True)):
        if cats:
            seen = np.array(sorted(cats), dtype=np.float64)
            top = float(seen.max())
            pool = np.concatenate([seen, [top + 1.0, top + 1000.0, -1.0, 0.5, top + 0.5]])
            column = rng.choice(pool, rows)
        elif thresholds:
            points = np.array(sorted(thresholds), dtype=np.float64)
            margin = max(1.0, float(points[-1] - points[0]))
            edges = np.concatenate([[points[0] - margin], points, [points[-1] + margin]])
            slot = rng.integers(0, len(edges) - 1, rows)
            column = rng.uniform(edges[slot], edges[slot + 1])
            exact = rng.random(rows) < 0.10
            column[exact] = rng.choice(points, int(exact.sum()))
        else:  # the model never splits on it: any value
            column = rng.normal(0.0, 100.0, rows)
        special = rng.random(rows)
        column[special < 0.03] = 0.0
        column[(special >= 0.03) & (special < 0.04)] = np.inf
        column[(special >= 0.04) & (special < 0.05)] = -np.inf
        column[rng.random(rows) < nan_share] = np.nan
        out[:, j] = column
    out[0, :] = np.nan
    out[1, :] = 0.0
    paths = _leaf_paths(booster)
    leaf_rows = out[rng.integers(0, rows, len(paths))].copy()
    for i, path in enumerate(paths):
        for feature, constraint in path.items():
            leaf_rows[i, feature] = _path_value(constraint, categories[feature], rng)
    return np.ascontiguousarray(np.concatenate([out, leaf_rows]))


# -- equivalence --------------------------------------------------------------------------


@dataclass(frozen=True)
class Equivalence:
    """The compiled forest against LightGBM on sample rows."""

    rows: int
    nan_values: int
    single_row_calls: int
    max_abs_diff: float  # inf when either side gave a non-finite score
    tolerance: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # JSON has no inf: a failed comparison is recorded as null (and never passes)
        out["max_abs_diff"] = self.max_abs_diff if math.isfinite(self.max_abs_diff) else None
        return out | {"passed": self.passed}


def _max_abs_diff(expected: F64, actual: F64) -> float:
    if expected.shape != actual.shape:
        return math.inf
    diff = np.abs(expected - actual)
    if diff.size == 0:
        return 0.0
    if not np.all(np.isfinite(diff)):
        return math.inf
    return float(diff.max())


def check_equivalence(
    booster: Any,
    forest: CompiledForest,
    rows: F64,
    *,
    tolerance: float = TOLERANCE,
    single_row_calls: int = SINGLE_ROW_CHECKS,
) -> Equivalence:
    """Compare the compiled forest's raw scores with LightGBM's
    ``predict(raw_score=True, num_threads=1)`` on ``rows``: all at once, and the first
    ``single_row_calls`` rows one per call (the serving path)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    expected = np.asarray(booster.predict(rows, raw_score=True, num_threads=1), dtype=np.float64)
    worst = _max_abs_diff(expected, forest.raw_score(rows, num_threads=1))
    singles = min(single_row_calls, rows.shape[0])
    for i in range(singles):
        worst = max(worst, _max_abs_diff(expected[i : i + 1], forest.raw_score(rows[i : i + 1])))
    return Equivalence(
        rows=int(rows.shape[0]),
        nan_values=int(np.isnan(rows).sum()),
        single_row_calls=singles,
        max_abs_diff=worst,
        tolerance=tolerance,
    )


# -- compiling a registered version -------------------------------------------------------


@dataclass(frozen=True)
class CompileResult:
    version: str
    path: Path | None  # the compiled/ directory; None when the forest was refused
    record: dict[str, Any]
    equivalence: Equivalence


def compile_version(
    registry: ModelRegistry,
    version: str | None = None,
    *,
    rows: int = SAMPLE_ROWS,
    seed: int = SAMPLE_SEED,
    tolerance: float = TOLERANCE,
) -> CompileResult:
    """Compile a registered version's ``model.txt`` (verified first), compare the result
    with LightGBM on ``rows`` sample rows and, only if every one is within ``tolerance``,
    attach it to the version as ``compiled/``. A refused forest is not stored; its
    equivalence is in the result."""
    versions = lleaves_versions()
    resolved, manifest, artifacts = registry.verify(version)
    model_text = artifacts[MODEL_FILE]
    booster = lgb.Booster(model_str=model_text.decode("utf-8"))
    started = time.perf_counter()
    object_code = compile_object(model_text)
    compile_seconds = time.perf_counter() - started
    forest = CompiledForest.from_bytes(model_text, object_code)  # exactly what will be served
    if forest.num_features != int(booster.num_feature()):
        raise CompileError("the compiled forest has another number of features than the model")
    sample = sample_rows(booster, rows, seed=seed)
    equivalence = check_equivalence(booster, forest, sample, tolerance=tolerance)
    record = {
        "format": RECORD_FORMAT,
        "engine": ENGINE_LLEAVES,
        "version": resolved,
        "object_file": COMPILED_OBJECT,
        "object_sha256": sha256_hex(object_code),
        "model_sha256": sha256_hex(model_text),
        "raw_score": True,
        "compile_options": dict(COMPILE_OPTIONS),
        "compile_seconds": round(compile_seconds, 3),
        "trees": int(booster.num_trees()),
        "libraries": {**versions, "lightgbm": str(lgb.__version__)},
        "target": host_target(),
        "equivalence": equivalence.to_dict() | {"seed": seed, "sampler": "split-thresholds"},
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
    }
    if manifest["artifacts"][MODEL_FILE] != record["model_sha256"]:  # verify() checked it
        raise CompileError("model.txt changed while it was compiled")
    if not equivalence.passed:
        return CompileResult(resolved, None, record, equivalence)
    record_bytes = (json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()
    path = registry.attach_compiled(
        resolved, {COMPILED_OBJECT: object_code, COMPILED_RECORD: record_bytes}
    )
    return CompileResult(resolved, path, record, equivalence)


# -- loading ------------------------------------------------------------------------------


def _refuse_reason(
    record: dict[str, Any], loaded: LoadedModel, object_code: bytes, model_text: bytes
) -> str | None:
    """Why the recorded compiled forest may not be loaded (None: it may)."""
    if record.get("format") != RECORD_FORMAT or record.get("engine") != ENGINE_LLEAVES:
        return f"{COMPILED_RECORD} has an unknown format or engine"
    if record.get("version") != loaded.version:
        return f"{COMPILED_RECORD} names version {record.get('version')}"
    model_sha = loaded.manifest["artifacts"][MODEL_FILE]  # verified with the manifest
    if sha256_hex(model_text) != model_sha:
        return f"{MODEL_FILE} differs from the one the manifest records"
    if record.get("model_sha256") != model_sha:
        return f"it was compiled from another {MODEL_FILE} (sha256 differs)"
    if sha256_hex(object_code) != record.get("object_sha256"):
        return f"{COMPILED_OBJECT} sha256 differs from the one in {COMPILED_RECORD}"
    if record.get("raw_score") is not True:
        return "it was not compiled for raw scores"
    equivalence = record.get("equivalence") or {}
    diff, tolerance = equivalence.get("max_abs_diff"), equivalence.get("tolerance")
    if not (
        equivalence.get("passed") is True
        and isinstance(diff, int | float)
        and isinstance(tolerance, int | float)
        and tolerance <= TOLERANCE
        and diff <= tolerance
        and int(equivalence.get("rows", 0)) >= 1_000
    ):
        return "its recorded equivalence to LightGBM is missing or not within 1e-9"
    libraries = record.get("libraries") or {}
    running = lleaves_versions()
    for name, value in running.items():
        if libraries.get(name) != value:
            return f"it was compiled with {name} {libraries.get(name)}, running {value}"
    if record.get("target") != host_target():
        return "it was compiled for another CPU than this host's"
    return None


def load_compiled(loaded: LoadedModel) -> tuple[CompiledForest | None, str]:
    """The verified compiled forest of a loaded (verified) model, or None and the reason
    the caller must score with LightGBM."""
    directory = loaded.path / COMPILED_DIR
    if not (directory / COMPILED_RECORD).is_file():
        return None, "no compiled forest for this version (credit-risk compile)"
    try:
        versions = lleaves_versions()
        record = json.loads((directory / COMPILED_RECORD).read_bytes())
        if not isinstance(record, dict):
            return None, f"{COMPILED_RECORD} is not a JSON object"
        object_path = directory / str(record.get("object_file", COMPILED_OBJECT))
        if object_path.name != COMPILED_OBJECT or not object_path.is_file():
            return None, f"{COMPILED_OBJECT} is missing"
        object_code = object_path.read_bytes()
        model_text = (loaded.path / MODEL_FILE).read_bytes()
        reason = _refuse_reason(record, loaded, object_code, model_text)
        if reason is not None:
            return None, f"compiled forest refused: {reason}"
        forest = CompiledForest.from_bytes(model_text, object_code)
        check = check_equivalence(
            loaded.booster,
            forest,
            sample_rows(loaded.booster, LOAD_CHECK_ROWS, seed=SAMPLE_SEED + 1),
            single_row_calls=16,
        )
        if not check.passed:
            return None, (
                f"compiled forest refused: differs from LightGBM by {check.max_abs_diff} on "
                "the load-time check"
            )
    except CompileError as err:
        return None, str(err)
    except Exception as err:  # a broken compiled forest must never stop LightGBM serving
        return None, f"compiled forest refused: {type(err).__name__}: {err}"
    return forest, (
        f"lleaves {versions['lleaves']} (llvmlite {versions['llvmlite']}), verified; max abs "
        f"difference {record['equivalence']['max_abs_diff']:.3g} on "
        f"{record['equivalence']['rows']} rows"
    )
