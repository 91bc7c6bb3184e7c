"""The standard training road: a pipeline configured in shipyard.toml rather than written.

::

    [sources.customers]
    kind = "csv"
    path = "data/customers.csv"

    [pipelines.train]
    kind = "standard"
    source = "customers"            # a [sources.*] table
    target = "churned"
    task = "classification"         # or "regression"
    id_columns = ["customer_id"]    # kept out of the features
    features = []                   # empty: every column but the target and the ids
    model = "hist_gradient_boosting"
    model_params = { max_iter = 200, learning_rate = 0.1 }
    test_size = 0.25
    seed = 0
    register_as = "churn"           # registered model name (default: the pipeline's name)
    promote_to = "prototype"        # try this stage's gate after registering ("" = don't)
    dirty_tree = "warn"             # production-bound (promote_to = "production") and the
                                    # git tree has uncommitted changes: "warn", "refuse", "allow"

    [pipelines.train.validate]      # data quality: the run fails on any violation
    max_null_fraction = 0.2         # per used column
    max_duplicate_fraction = 0.01   # duplicate rows (on id_columns if given, else whole rows)
    required_columns = []           # beyond the target and the features
    ranges = { tenure_months = [0, 120] }
    min_rows = 100

:func:`build_standard` turns the table into seven steps (functions in
:mod:`~shipyard.pipelines.standard_steps` and :mod:`~shipyard.pipelines.standard_training`)::

    extract  -> raw/SOURCE
    validate -> processed/NAME_quality   (one row per check; raises DataQualityError)
    treat    -> processed/NAME_train, processed/NAME_test
    train    -> artifacts/NAME_model     (a scikit-learn Pipeline)
    evaluate -> artifacts/NAME_evaluation  ({"metrics", "value_summary", "test_rows"})
    register -> artifacts/NAME_version   ("churn:4")
    gate     -> artifacts/NAME_gate      ({"ref", "stage", "outcome", "failed"})

Every setting becomes a step parameter's default, so ``[pipelines.NAME.params.STEP]`` and
``--param STEP.KEY=VALUE`` override them like any pipeline's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from shipyard.core.exceptions import ConfigError, ShipyardError
from shipyard.core.refs import check_alias, check_name
from shipyard.core.settings import CONFIG_FILE, Settings
from shipyard.datasets import parse_sources
from shipyard.pipelines import standard_steps as steps
from shipyard.pipelines import standard_training as training
from shipyard.pipelines.graph import Pipeline
from shipyard.pipelines.standard_steps import open_registry
from shipyard.pipelines.steps import Step, step
from shipyard.value import ValueSettings

__all__ = [
    "STANDARD",
    "StandardConfig",
    "ValidateConfig",
    "build_standard",
    "is_standard",
    "open_registry",
    "parse_standard",
]

#: The ``kind`` of a ``[pipelines.NAME]`` table that :func:`build_standard` builds.
STANDARD = "standard"


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


class ValidateConfig(_Table):
    """The ``[pipelines.NAME.validate]`` table: the limits of the data quality checks."""

    max_null_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    required_columns: list[str] = Field(default_factory=list)
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    min_rows: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ValidateConfig:
        wrong = [f"{c} = [{lo:g}, {hi:g}]" for c, (lo, hi) in self.ranges.items() if lo > hi]
        if wrong:
            raise ValueError(f"a range is [low, high] with low <= high, got {', '.join(wrong)}")
        return self


class StandardConfig(_Table):
    """One ``[pipelines.NAME]`` table with ``kind = "standard"``."""

    kind: Literal["standard"]
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    task: Literal["classification", "regression"] = "classification"
    id_columns: list[str] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)
    model: str = ""  # empty: the task's default (training.DEFAULT_MODEL)
    model_params: dict[str, Any] = Field(default_factory=dict)
    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: int = Field(default=0, ge=0)
    register_as: str = ""  # empty: the pipeline's name
    promote_to: str = ""
    #: what the register step does when a production-bound pipeline (``promote_to =
    #: "production"``) runs from a git tree with uncommitted changes
    dirty_tree: Literal["warn", "refuse", "allow"] = "warn"
    checks: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    # Per-step parameter overrides, read by the runner as for any pipeline.
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _columns(self) -> StandardConfig:
        for field, names in (("id_columns", self.id_columns), ("features", self.features)):
            if self.target in names:
                raise ValueError(f"{field} lists the target {self.target!r}; leave it out")
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{field} lists {', '.join(repeated)} more than once")
        both = sorted(set(self.id_columns) & set(self.features))
        if both:
            raise ValueError(f"{', '.join(both)} is both an id column and a feature; pick one")
        if not self.model:
            self.model = training.DEFAULT_MODEL[self.task]
        return self


def is_standard(table: Mapping[str, Any]) -> bool:
    """True when a ``[pipelines.NAME]`` table declares ``kind = "standard"``."""
    return table.get("kind") == STANDARD


def parse_standard(settings: Settings, name: str) -> StandardConfig:
    """Validate ``[pipelines.NAME]``; every problem is a :class:`ConfigError` naming the field."""
    where = f"[pipelines.{name}] in {settings.root / CONFIG_FILE}"
    table = settings.pipelines.get(name)
    if table is None:
        known = ", ".join(n for n, t in settings.pipelines.items() if is_standard(t)) or "none"
        raise ConfigError(
            f"no [pipelines.{name}] table in {settings.root / CONFIG_FILE}; its standard "
            f"pipelines are {known}"
        )
    try:
        config = StandardConfig.model_validate(table)
    except ValidationError as exc:
        problems = "; ".join(_describe(name, err) for err in exc.errors())
        raise ConfigError(f"{where} is invalid: {problems}") from exc
    sources = parse_sources(settings.sources)
    if config.source not in sources:
        raise ConfigError(
            f"{where}: source {config.source!r} is not a [sources.*] table; the sources are "
            f"{', '.join(sources) or 'none (add a [sources.NAME] table)'}"
        )
    if settings.value is not None:
        value = ValueSettings.from_table(settings.value)
        if value.kind != config.task:
            raise ConfigError(
                f"{where}: task is {config.task!r} but [value] declares a {value.kind} value "
                f"model; use [value.{config.task}] or change the task"
            )
    try:
        training.make_estimator(config.task, config.model, config.model_params, config.seed)
        check_name(config.register_as or name)
        if config.promote_to:
            check_alias(config.promote_to)
    except ShipyardError as exc:
        raise ConfigError(f"{where}: {exc.message}") from exc
    return config


def build_standard(settings: Settings, name: str) -> Pipeline:
    """The seven-step pipeline ``[pipelines.NAME]`` describes (see the module docstring)."""
    config = parse_standard(settings, name)
    root = str(settings.root)
    task = {"target": config.target, "task": config.task}
    columns = {"features": config.features, "id_columns": config.id_columns}
    raw = f"raw/{config.source}"
    quality, train_set, test_set = (f"processed/{name}_{s}" for s in ("quality", "train", "test"))
    model, evaluation, version, decision = (
        f"artifacts/{name}_{s}" for s in ("model", "evaluation", "version", "gate")
    )
    checks = config.checks
    recorded = {"pipeline": name, "source": config.source, "task": config.task,
                "model": config.model, "model_params": config.model_params,
                "test_size": config.test_size, "seed": config.seed}  # fmt: skip
    built = [
        # The source may change under the same settings: extract always reads it (an
        # unchanged table is stored once, so the steps after it still hit their cache).
        _configure(steps.extract, {}, raw, cache=False,
                   params={"project_root": root, "source": config.source}),
        _configure(steps.validate, {"data": raw}, quality,
                   params={**task, **columns, **checks.model_dump(mode="json")}),
        _configure(training.treat, {"data": raw, "quality": quality}, (train_set, test_set),
                   params={**task, **columns, "test_size": config.test_size,
                           "seed": config.seed}),
        _configure(training.train, {"train_set": train_set}, model,
                   params={**task, "model": config.model, "model_params": config.model_params,
                           "seed": config.seed}),
        _configure(training.evaluate, {"model": model, "test_set": test_set}, evaluation,
                   params={**task, "value": settings.value}),
        _configure(steps.register,
                   {"model": model, "evaluation": evaluation, "train_set": train_set,
                    "test_set": test_set}, version,
                   params={"project_root": root, "register_as": config.register_as or name,
                           "target": config.target, "pipeline": name, "training": recorded,
                           "dirty_tree": (config.dirty_tree if config.promote_to == "production"
                                          else "allow")}),
        # Gates and the registry change outside the pipeline: decide on every run.
        _configure(steps.gate, {"version": version}, decision, cache=False,
                   params={"project_root": root, "promote_to": config.promote_to,
                           "pipeline": name}),
    ]  # fmt: skip
    return Pipeline.from_steps(name, built)


def _configure(
    func: Callable[..., Any],
    inputs: Mapping[str, str],
    outputs: str | Sequence[str],
    *,
    params: Mapping[str, Any],
    cache: bool = True,
) -> Step:
    """``func`` as a step whose parameter defaults are the pipeline's settings."""
    made: Step = step(func, inputs=inputs, outputs=outputs, cache=cache)
    unknown = sorted(set(params) - set(made.params))
    if unknown:  # pragma: no cover - a mismatch between this module and standard_steps
        raise TypeError(f"{func.__name__}() takes no parameter(s) {', '.join(unknown)}")
    return dataclasses.replace(made, params={**made.params, **params})


def _describe(name: str, err: ErrorDetails) -> str:
    """One pydantic error as ``pipelines.NAME.field: message (got value)``."""
    where = ".".join(["pipelines", name, *(str(part) for part in err["loc"])])
    if err["type"] in ("missing", "value_error", "extra_forbidden"):
        message = "unknown field; check its spelling" if err["type"] == "extra_forbidden" else ""
        return f"{where}: {message or err['msg']}"
    return f"{where}: {err['msg']} (got {err['input']!r})"
