"""Data drift between a reference and a current dataset, with Evidently 0.7's statistics.

``compare(reference, current)`` runs one test per column and reports the share of drifted
columns. The tests, their defaults and thresholds are Evidently's (see
:mod:`shipyard.statistics._stattests` for the file each one follows); the speed comes from
reading one column at a time, sorting each numeric sample once in parallel threads and
counting categories in Arrow.

Either side may be a :class:`~shipyard.statistics.profile.DatasetProfile` instead of rows;
the statistic is then computed from the profile (``source="profile"``). Categorical
statistics and numeric columns whose profile kept every distinct value are exact
(``bound=0.0``); other numeric statistics come from the fine histogram, and ``bound`` is a
rigorous limit of ``|score - score on the raw rows|`` (:mod:`shipyard.statistics._bounds`).
Dataset drift follows Evidently's ``get_dataset_drift``: drifted columns / columns
``>= share_threshold`` (0.5).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from shipyard.core.exceptions import InvalidArgumentError, SchemaError
from shipyard.statistics._columns import Side, column_score
from shipyard.statistics._sources import (
    CATEGORICAL,
    NUMERIC,
    ColumnSource,
    Data,
    as_column_source,
    can_be_categorical,
    infer_kind,
    is_numeric_type,
)
from shipyard.statistics._stattests import (
    ALLOWED_KINDS,
    DEFAULT_THRESHOLDS,
    METHODS,
    drifted,
)
from shipyard.statistics.profile import DatasetProfile, require_profile_column


@dataclass(frozen=True)
class ColumnDrift:
    """The drift test of one column.

    ``score`` is a p-value for ``ks``, ``chisquare`` and ``z`` (drift when small) and a
    distance for ``wasserstein``, ``jensenshannon`` and ``psi`` (drift when large).
    ``source`` says whether it was computed from rows (``raw``) or from a profile
    (``profile``); then ``bound`` is the largest possible ``|score - raw score|``.
    """

    column: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    source: str
    bound: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (non-finite floats as None)."""
        return {
            "column": self.column,
            "kind": self.kind,
            "method": self.method,
            "score": _finite(self.score),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "source": self.source,
            "bound": _finite(self.bound),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnDrift:
        """The result :meth:`to_dict` wrote (a score stored as None reads back as NaN)."""
        score, bound = data["score"], data.get("bound")
        return cls(
            column=str(data["column"]),
            kind=str(data["kind"]),
            method=str(data["method"]),
            score=math.nan if score is None else float(score),
            threshold=float(data["threshold"]),
            drifted=bool(data["drifted"]),
            source=str(data.get("source", "raw")),
            bound=None if bound is None else float(bound),
        )


@dataclass(frozen=True)
class DriftReport:
    """Drift of every compared column and of the dataset as a whole."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    dataset_drift: bool
    share_threshold: float
    reference_rows: int
    current_rows: int

    def column(self, name: str) -> ColumnDrift:
        """The result of column ``name``."""
        for result in self.columns:
            if result.column == name:
                return result
        raise InvalidArgumentError(
            f"Column {name!r} was not compared; compared: {[c.column for c in self.columns]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "columns": [c.to_dict() for c in self.columns],
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "share_threshold": self.share_threshold,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReport:
        """The report :meth:`to_dict` wrote.

        Raises :class:`InvalidArgumentError` naming the first missing key.
        """
        try:
            return cls(
                columns=tuple(ColumnDrift.from_dict(c) for c in data["columns"]),
                drift_share=float(data["drift_share"]),
                dataset_drift=bool(data["dataset_drift"]),
                share_threshold=float(data["share_threshold"]),
                reference_rows=int(data["reference_rows"]),
                current_rows=int(data["current_rows"]),
            )
        except KeyError as exc:
            raise InvalidArgumentError(
                f"the drift report (or one of its columns) lacks the key {exc.args[0]!r}; "
                "pass what DriftReport.to_dict() wrote"
            ) from exc


@dataclass(frozen=True)
class DriftOptions:
    """How columns are tested.

    ``methods`` and ``thresholds`` override Evidently's default test and threshold per
    column; ``share_threshold`` is the share of drifted columns that makes dataset drift;
    ``categorical`` forces columns to be categorical (``None``: strings, dictionaries and
    booleans are categorical, numbers numeric; a profile's kinds always win).
    """

    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    share_threshold: float = 0.5
    categorical: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name, method in self.methods.items():
            if method not in METHODS:
                raise InvalidArgumentError(
                    f"Method {method!r} for column {name!r} is unknown; use one of {list(METHODS)}"
                )
        for name, threshold in self.thresholds.items():
            if not isinstance(threshold, int | float) or not math.isfinite(threshold):
                raise InvalidArgumentError(
                    f"Threshold for column {name!r} must be a finite number but got {threshold!r}"
                )
        share = self.share_threshold
        if not isinstance(share, int | float) or not 0 < share <= 1:
            raise InvalidArgumentError(
                f"share_threshold must be a number in (0, 1] but got {share!r}"
            )

    def check_columns(self, names: Collection[str]) -> None:
        """Refuse options that name a column not among ``names`` (the reference's)."""
        stray = (set(self.methods) | set(self.thresholds) | set(self.categorical or ())) - set(
            names
        )
        if stray:
            raise InvalidArgumentError(
                f"Options name columns the reference does not have: {sorted(stray)}"
            )

    def only(self, names: Collection[str]) -> DriftOptions:
        """The options of the columns ``names`` alone (to test some columns apart)."""
        chosen = set(names)
        return DriftOptions(
            methods={k: v for k, v in self.methods.items() if k in chosen},
            thresholds={k: v for k, v in self.thresholds.items() if k in chosen},
            share_threshold=self.share_threshold,
            categorical=None if self.categorical is None else self.categorical & chosen,
        )


def compare(
    reference: Data | ColumnSource | DatasetProfile,
    current: Data | ColumnSource | DatasetProfile,
    options: DriftOptions | None = None,
    columns: Sequence[str] | None = None,
    threads: int | None = None,
) -> DriftReport:
    """Test every column of ``reference`` (or ``columns``) for drift in ``current``.

    Each side is a pyarrow Table, a pandas DataFrame, a Parquet file, folder or list of
    files (read one column at a time), or a :class:`DatasetProfile`. ``threads`` columns
    are tested at once (default: one per CPU).
    """
    options = options or DriftOptions()
    ref, cur = _side(reference), _side(current)
    plan = _plan(ref, cur, options, columns)

    def run(item: tuple[str, str]) -> ColumnDrift:
        name, kind = item
        return _column_drift(name, kind, ref, cur, options)

    with ThreadPoolExecutor(max_workers=max(1, threads or os.cpu_count() or 1)) as pool:
        results = tuple(pool.map(run, plan))
    share = sum(r.drifted for r in results) / len(results)
    return DriftReport(
        columns=results,
        drift_share=share,
        dataset_drift=bool(share >= options.share_threshold),
        share_threshold=float(options.share_threshold),
        reference_rows=_rows(ref),
        current_rows=_rows(cur),
    )


def _side(data: Data | ColumnSource | DatasetProfile) -> Side:
    return data if isinstance(data, DatasetProfile) else as_column_source(data)


def _rows(side: Side) -> int:
    return int(side.rows)


def _names(side: Side) -> list[str]:
    if isinstance(side, DatasetProfile):
        return list(side.columns)
    return [f.name for f in side.schema if infer_kind(f.type) is not None]


def _plan(
    ref: Side, cur: Side, options: DriftOptions, columns: Sequence[str] | None
) -> list[tuple[str, str]]:
    options.check_columns(
        list(ref.columns) if isinstance(ref, DatasetProfile) else list(ref.schema.names)
    )
    names = list(columns) if columns is not None else _names(ref)
    if not names:
        raise InvalidArgumentError(
            "There is no numeric or categorical column to compare; pass columns=[...]"
        )
    plan = []
    for name in names:
        kind = _kind(name, ref, cur, options)
        method = options.methods.get(name)
        if method is not None and kind not in ALLOWED_KINDS[method]:
            raise InvalidArgumentError(
                f"Method {method!r} does not apply to {kind} column {name!r} (it takes "
                f"{' or '.join(ALLOWED_KINDS[method])} columns); choose another method, or "
                "list the column in DriftOptions(categorical=...) to test it as categories"
            )
        plan.append((name, kind))
    return plan


def _kind(name: str, ref: Side, cur: Side, options: DriftOptions) -> str:
    forced = name in (options.categorical or ())
    kinds = []
    for side, label in ((ref, "reference"), (cur, "current")):
        if isinstance(side, DatasetProfile):
            kinds.append(require_profile_column(side, name, label).kind)
    if kinds:
        if len(set(kinds)) > 1 or (forced and kinds[0] != CATEGORICAL):
            raise InvalidArgumentError(
                f"Column {name!r} is {kinds[0]} in a profile, which cannot be tested as "
                f"{'categorical' if forced else kinds[-1]}; profile both sides alike"
            )
        kind = kinds[0]
    elif isinstance(ref, ColumnSource):
        kind_of = ref.field(name, "reference").type
        guess = CATEGORICAL if forced and can_be_categorical(kind_of) else infer_kind(kind_of)
        if guess is None:
            raise InvalidArgumentError(
                f"Column {name!r} has type {kind_of}, which is neither numeric nor categorical; "
                "leave it out of columns=[...]"
            )
        kind = guess
    else:  # pragma: no cover - a profile on either side filled ``kinds``
        raise InvalidArgumentError(f"Cannot tell the kind of column {name!r}")
    for side, label in ((ref, "reference"), (cur, "current")):
        if isinstance(side, ColumnSource):
            kind_of = side.field(name, label).type
            fits = is_numeric_type(kind_of) if kind == NUMERIC else can_be_categorical(kind_of)
            if not fits or (kind == NUMERIC and pa.types.is_dictionary(kind_of)):
                raise SchemaError(
                    f"Column {name!r} is {kind} but has type {kind_of} in the {label} data; "
                    f"give it the same type on both sides",
                    column=name,
                )
    return kind


def _column_drift(name: str, kind: str, ref: Side, cur: Side, options: DriftOptions) -> ColumnDrift:
    from_profile = isinstance(ref, DatasetProfile) or isinstance(cur, DatasetProfile)
    method, score, bound = column_score(name, kind, ref, cur, options.methods.get(name))
    threshold = float(options.thresholds.get(name, DEFAULT_THRESHOLDS[method]))
    return ColumnDrift(
        column=name,
        kind=kind,
        method=method,
        score=score,
        threshold=threshold,
        drifted=drifted(method, score, threshold),
        source="profile" if from_profile else "raw",
        bound=(bound or 0.0) if from_profile else None,
    )


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
