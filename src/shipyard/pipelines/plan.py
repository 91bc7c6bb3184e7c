"""What a run will do, settled before anything runs: steps, parameters and external inputs.

Parameters come from the function's defaults, then shipyard.toml
(``[pipelines.NAME.params.STEP]``), then the caller (``--param STEP.KEY=VALUE``). Every
input the chosen steps read but do not write must already be stored: a run that would
fail on its third step for want of a dataset is refused up front.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.core.exceptions import ConfigError, InvalidArgumentError, NotFoundError
from shipyard.datasets import Datasets
from shipyard.pipelines.cache import describe_dataset, latest_artifact
from shipyard.pipelines.graph import Pipeline
from shipyard.pipelines.steps import is_dataset
from shipyard.store import ArtifactStore, Database

Params = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Plan:
    """The steps to run (in dependency order), their parameters and the inputs found."""

    pipeline: Pipeline
    steps: list[str]
    params: Params
    external: dict[str, dict[str, Any]]


def _check_json(value: Any, where: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where} is {value!r} ({type(value).__name__}); parameters must be JSON values "
            "(numbers, strings, booleans, null, lists and tables of them)"
        ) from exc
    return value


def _overlay(result: Params, pipeline: Pipeline, overrides: Mapping[str, Any], source: str) -> None:
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source} must be a table of step names, got {overrides!r}")
    unknown_steps = [s for s in overrides if s not in pipeline.steps]
    if unknown_steps:
        raise ConfigError(
            f"{source} names unknown step(s) {', '.join(map(repr, unknown_steps))}; the steps "
            f"of pipeline {pipeline.name!r} are {', '.join(pipeline.steps)}"
        )
    for step_name, values in overrides.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}.{step_name} must be a table of KEY = VALUE")
        known = pipeline.steps[step_name].params
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(
                f"{source} {step_name}.{unknown[0]}: step {step_name!r} has no parameter "
                f"{', '.join(map(repr, unknown))}; "
                f"step {step_name!r} takes {', '.join(known) or 'no parameters'}"
            )
        for key, value in values.items():
            result[step_name][key] = _check_json(value, f"{source}.{step_name}.{key}")


def resolve_params(
    pipeline: Pipeline,
    configured: Mapping[str, Any] | None = None,
    given: Mapping[str, Mapping[str, Any]] | None = None,
) -> Params:
    """Every step's effective parameters: defaults, then ``configured``, then ``given``."""
    result: Params = {
        name: {k: _check_json(v, f"the default of {name}.{k}") for k, v in step.params.items()}
        for name, step in pipeline.steps.items()
    }
    _overlay(result, pipeline, configured or {}, f"[pipelines.{pipeline.name}.params]")
    _overlay(result, pipeline, given or {}, "--param")
    return result


def parse_param_options(options: Sequence[str]) -> Params:
    """Parse ``STEP.KEY=VALUE`` strings; VALUE is read as JSON when it is JSON, else as text."""
    result: Params = {}
    for option in options:
        target, sep, text = option.partition("=")
        step_name, dot, key = target.strip().partition(".")
        if not sep or not dot or not step_name or not key:
            raise InvalidArgumentError(
                f"--param expects STEP.KEY=VALUE (e.g. train.max_depth=6) but got {option!r}"
            )
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = text
        result.setdefault(step_name, {})[key] = value
    return result


def find_external(
    pipeline: Pipeline,
    steps: Sequence[str],
    *,
    database: Database,
    datasets: Datasets,
    artifacts: ArtifactStore,
) -> dict[str, dict[str, Any]]:
    """The newest stored version of every item ``steps`` read but do not write.

    Raises :class:`NotFoundError` naming every missing item and the step that writes it.
    """
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for item in pipeline.external_inputs(steps):
        producer = pipeline.producers.get(item)
        if is_dataset(item):
            described = describe_dataset(datasets.get(item)) if datasets.exists(item) else None
        else:
            described = latest_artifact(
                item, database=database, artifacts=artifacts, pipeline=pipeline.name,
                producer=producer,
            )  # fmt: skip
        if described is not None:
            found[item] = described
            continue
        kind = "dataset" if is_dataset(item) else "object"
        if producer is not None:
            missing.append(
                f"{kind} {item} does not exist yet: run the step that writes it ({producer}) first"
            )
        else:
            missing.append(
                f"{kind} {item} does not exist yet and no step of pipeline {pipeline.name!r} "
                "writes it: store it first (e.g. project.datasets.write)"
            )
    if missing:
        raise NotFoundError("; ".join(missing))
    return found


def make_plan(
    pipeline: Pipeline,
    *,
    steps: Sequence[str] | None,
    configured: Mapping[str, Any] | None,
    given: Mapping[str, Mapping[str, Any]] | None,
    database: Database,
    datasets: Datasets,
    artifacts: ArtifactStore,
) -> Plan:
    """Check everything a run needs and settle what it will do (nothing is written)."""
    if steps is not None and not steps:
        raise InvalidArgumentError("steps is empty; pass None to run every step")
    chosen = set(pipeline.check_step_names(steps)) if steps is not None else set(pipeline.steps)
    ordered = [name for name in pipeline.order() if name in chosen]
    params = resolve_params(pipeline, configured, given)
    external = find_external(
        pipeline, ordered, database=database, datasets=datasets, artifacts=artifacts
    )
    return Plan(pipeline, ordered, {name: params[name] for name in ordered}, external)
