"""The data and registry steps of the standard training road (see :mod:`.standard`).

Each function is a plain module-level function: :func:`~shipyard.pipelines.standard.build_standard`
wraps it with :func:`~shipyard.pipelines.steps.step` (its inputs and outputs depend on the
pipeline's name) and sets its parameters' defaults from shipyard.toml. The runner's child
process imports it by name and calls it with its inputs and JSON parameters, so
everything a step needs arrives as a parameter; the steps that touch the registry open it
from ``project_root`` with :func:`open_registry`. Called directly, each is an ordinary
function (tests do so). The training steps (``treat``, ``train``, ``evaluate``) are in
:mod:`.standard_training`, so the steps here start without importing scikit-learn.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shipyard.core.exceptions import (
    ConfigError,
    ConflictError,
    DataQualityError,
    GateFailedError,
)
from shipyard.core.settings import Settings
from shipyard.datasets import parse_sources, read_source
from shipyard.registry import Registry
from shipyard.registry.lineage import git_state
from shipyard.store import ArtifactStore, Database

#: Columns of the quality report ``validate`` writes.
REPORT_COLUMNS = ["check", "column", "value", "limit", "passed", "detail"]


@contextmanager
def open_registry(project_root: str | Path) -> Iterator[Registry]:
    """The registry of the project at ``project_root`` (settings read as an entry point would)."""
    settings = Settings.load(Path(project_root))
    database = Database.open(settings.database_url)
    try:
        yield Registry(database, ArtifactStore(settings.artifacts_url), settings)
    finally:
        database.dispose()


# -- steps -------------------------------------------------------------------------------


def extract(project_root: str = ".", source: str = "") -> pd.DataFrame:
    """Read the ``[sources.NAME]`` source ``source`` of the project (written to ``raw/``)."""
    settings = Settings.load(Path(project_root))
    sources = parse_sources(settings.sources)
    if source not in sources:
        raise ConfigError(
            f"no source {source!r} in {settings.root / 'shipyard.toml'}; its sources are "
            f"{', '.join(sources) or 'none'}"
        )
    return read_source(sources[source], settings.root)


def validate(
    data: pd.DataFrame,
    target: str = "",
    task: str = "classification",
    features: Sequence[str] = (),
    id_columns: Sequence[str] = (),
    required_columns: Sequence[str] = (),
    max_null_fraction: float = 0.2,
    max_duplicate_fraction: float = 0.01,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    min_rows: int = 100,
) -> pd.DataFrame:
    """Check the data; return the report (one row per check) or raise :class:`DataQualityError`.

    Checks: every needed column is present (target, ids, features, ``required_columns``,
    range columns); the target suits the task; each used column's share of missing values
    is at most ``max_null_fraction``; values lie within ``ranges`` (``[low, high]``, either
    may be null); the share of duplicate rows (on ``id_columns`` if given) is at most
    ``max_duplicate_fraction``; there are at least ``min_rows`` rows.
    """
    ranges = dict(ranges or {})
    rows: list[dict[str, Any]] = []

    def check(name: str, column: str, value: float, limit: str, ok: bool, detail: str) -> None:
        rows.append(
            dict(zip(REPORT_COLUMNS, (name, column, value, limit, ok, detail), strict=True))
        )

    needed = _unique([target, *id_columns, *features, *required_columns, *ranges])
    for column in needed:
        present = column in data.columns
        check("required_column", column, float(present), "present", present,
              "present" if present else f"column {column!r} is missing")  # fmt: skip
    if target in data.columns:
        ok, limit, detail = _target_check(data[target], task)
        check("target", target, float(data[target].nunique()), limit, ok, detail)
    used = [c for c in needed if c in data.columns] if features else list(data.columns)
    for column in used:
        if column == target:
            continue  # the target check refuses any missing label
        share = float(data[column].isna().mean()) if len(data) else 0.0
        check("nulls", column, share, f"<= {max_null_fraction:g}", share <= max_null_fraction,
              f"{share:.1%} missing")  # fmt: skip
    for column, bounds in ranges.items():
        if column in data.columns:
            check("range", column, *_range_check(data[column], bounds))
    keys = [c for c in id_columns if c in data.columns] or list(data.columns)
    duplicates = float(data.duplicated(subset=keys).mean()) if len(data) else 0.0
    on = ", ".join(id_columns) if id_columns else "whole rows"
    check("duplicates", ", ".join(keys) if id_columns else "", duplicates,
          f"<= {max_duplicate_fraction:g}", duplicates <= max_duplicate_fraction,
          f"{duplicates:.1%} duplicate rows on {on}")  # fmt: skip
    check("min_rows", "", float(len(data)), f">= {min_rows}", len(data) >= min_rows,
          f"{len(data)} rows")  # fmt: skip
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    raise_on_failures(report, "the data failed its quality checks")
    return report


def register(
    model: Any,
    evaluation: Mapping[str, Any],
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    project_root: str = ".",
    register_as: str = "",
    target: str = "",
    pipeline: str = "",
    training: Mapping[str, Any] | None = None,
    run_id: str = "",
    dirty_tree: str = "allow",
) -> str:
    """Register the model with its metrics, parameters and datasets; return the version ref.

    ``run_id`` is filled by the runner (lineage links the version to its run); ``training``
    holds the configuration recorded as the version's parameters. ``dirty_tree`` (``warn``,
    ``refuse`` or ``allow``) is what to do when the project's git tree has uncommitted
    changes (the pipeline passes ``allow`` unless it is production-bound).
    """
    check_tree(Path(project_root), dirty_tree, pipeline)
    features = train_set.drop(columns=[target])
    # Record the estimator actually fitted (a run may override the configured model).
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    plain = (str, int, float, bool, type(None))
    fitted = {k: v for k, v in estimator.get_params().items() if isinstance(v, plain)}
    configured = {k: v for k, v in (training or {}).items() if k not in ("model", "model_params")}
    params = {**configured, "estimator": type(estimator).__name__, "estimator_params": fitted,
              "features": list(features.columns), "target": target,
              "train_rows": len(train_set), "test_rows": len(test_set)}  # fmt: skip
    with open_registry(project_root) as registry:
        info = registry.register(
            register_as,
            model,
            input_example=features,
            # monitoring compares windows with the held-out rows the metrics were measured on
            reference=test_set.drop(columns=[target]),
            metrics=evaluation["metrics"],
            params=params,
            tags={"pipeline": pipeline},
            description=f"trained by the standard pipeline {pipeline!r}",
            # The model was fitted a step ago by this project's own pipeline, from its own
            # code and data: trusting the types it holds is trusting the project itself.
            trust=True,
            datasets={"train": train_set, "test": test_set},
            run_id=run_id or None,
        )
    return info.ref


def check_tree(root: Path, policy: str, pipeline: str = "") -> None:
    """Warn about, or refuse, registering from a git tree with uncommitted changes."""
    if policy == "allow":
        return
    state = git_state(root)
    if not state["dirty"]:
        return
    message = (
        f"the git tree of {root} has uncommitted changes (commit {str(state['commit'])[:12]}), "
        f"so the version pipeline {pipeline!r} registers for production could not be rebuilt "
        "from its recorded commit"
    )
    if policy == "refuse":
        raise ConflictError(
            f"{message}; commit (or stash) them and run again, or set [pipelines.{pipeline}] "
            'dirty_tree = "warn"'
        )
    warnings.warn(f"{message}: the version records dirty = true", UserWarning, stacklevel=2)


def gate(
    version: str, project_root: str = ".", promote_to: str = "", pipeline: str = ""
) -> dict[str, Any]:
    """Try to promote ``version`` to ``promote_to`` (nothing when empty).

    A gate's refusal is a decision, not a failure: the registry records it in its history
    and the step returns it. Returns ``{"ref", "stage", "outcome", "failed"}`` with
    ``outcome`` one of ``promoted``, ``refused``, ``skipped`` (no ``promote_to``) or
    ``unchanged`` (the version already holds the stage).
    """
    result: dict[str, Any] = {"ref": version, "stage": promote_to or None, "failed": []}
    if not promote_to:
        return {**result, "outcome": "skipped"}
    with open_registry(project_root) as registry:
        if promote_to in registry.get(version).aliases:  # a cached register step re-ran
            return {**result, "outcome": "unchanged"}
        try:
            info = registry.promote(version, to=promote_to, reason=f"standard pipeline {pipeline}")
        except GateFailedError as exc:
            return {**result, "outcome": "refused", "failed": exc.failures}
    return {**result, "outcome": info.outcome}


# -- helpers -----------------------------------------------------------------------------


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(n for n in names if n))


def _target_check(labels: pd.Series, task: str) -> tuple[bool, str, str]:
    """Whether the target suits the task: (passed, limit, detail)."""
    missing = int(labels.isna().sum())
    if task == "regression":
        limit = "numeric, none missing"
        if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
            return False, limit, f"a regression target must be numeric, got {labels.dtype}"
    else:
        limit = "2+ classes, 2+ rows each, none missing"
    if missing:
        return False, limit, f"{missing} rows have no target value; drop or label them"
    if task == "regression":
        return True, limit, "numeric"
    counts = labels.value_counts()
    if len(counts) < 2:
        return False, limit, f"classification needs two classes or more, got {len(counts)}"
    smallest = counts.idxmin()
    if int(counts.min()) < 2:
        shown = smallest.item() if isinstance(smallest, np.generic) else smallest
        return False, limit, f"class {shown!r} has one row; a stratified split needs two"
    return True, limit, f"{len(counts)} classes, the smallest with {int(counts.min())} rows"


def _range_check(column: pd.Series, bounds: Sequence[float | None]) -> tuple[float, str, bool, str]:
    low, high = bounds
    limit = f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
    if not pd.api.types.is_numeric_dtype(column):
        return math.nan, limit, False, f"not numeric ({column.dtype}): a range needs numbers"
    values = column.dropna().astype(float)
    outside = np.zeros(len(values), dtype=bool)
    if low is not None:
        outside |= values.to_numpy() < low
    if high is not None:
        outside |= values.to_numpy() > high
    seen = f"min {values.min():g}, max {values.max():g}" if len(values) else "no values"
    return float(outside.sum()), limit, not outside.any(), f"{outside.sum()} rows outside ({seen})"


def raise_on_failures(report: pd.DataFrame, lead: str) -> None:
    """Raise :class:`DataQualityError` listing the failed checks of a quality report, if any."""
    failed = report[~report["passed"].astype(bool)].to_dict("records")
    if not failed:
        return
    lines = "; ".join(
        f"{f['check']}{' on ' + str(f['column']) if f['column'] else ''}: {f['detail']} "
        f"(limit {f['limit']})"
        for f in failed
    )
    raise DataQualityError(
        f"{lead}: {lines}. Fix the data, or relax the limits in [pipelines.NAME.validate]",
        [{str(k): v for k, v in f.items()} for f in failed],
    )
