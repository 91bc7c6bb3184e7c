"""A pipeline is the graph its steps' input and output names imply.

:meth:`Pipeline.from_steps` refuses, before anything runs: two steps with one name, two
steps writing one item, a cycle (named step by step), and a type mismatch (a dataset
read as something other than a DataFrame, an object written to a dataset zone).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.exceptions import ConfigError, NotFoundError
from shipyard.pipelines.steps import Step, is_dataset

#: The folder of a project that holds pipeline modules (one pipeline per ``NAME.py``).
PIPELINES_DIR = "pipelines"
#: Pipeline modules are imported as ``shipyard_pipeline_<NAME>`` (child processes rely on it).
MODULE_PREFIX = "shipyard_pipeline_"


@dataclass(frozen=True)
class Pipeline:
    """Steps in a valid dependency order."""

    name: str
    steps: dict[str, Step]
    producers: dict[str, str]

    @classmethod
    def from_steps(cls, name: str, steps: Iterable[Step]) -> Pipeline:
        """Build and validate the graph."""
        by_name: dict[str, Step] = {}
        producers: dict[str, str] = {}
        for item in steps:
            if item.name in by_name:
                raise ConfigError(f"pipeline {name!r} has two steps named {item.name!r}")
            by_name[item.name] = item
            for output in item.outputs:
                if output in producers:
                    raise ConfigError(
                        f"pipeline {name!r}: steps {producers[output]!r} and {item.name!r} "
                        f"both write {output}; give each output one producer"
                    )
                producers[output] = item.name
        if not by_name:
            raise ConfigError(f"pipeline {name!r} has no steps; declare functions with @step")
        pipeline = cls(name, by_name, producers)
        pipeline.order()  # raises on a cycle
        pipeline._check_types()
        return pipeline

    def upstream(self, step_name: str) -> list[str]:
        """The steps whose outputs ``step_name`` reads."""
        step = self.steps[step_name]
        found = {self.producers[i] for i in step.inputs.values() if i in self.producers}
        return sorted(found, key=list(self.steps).index)

    def order(self) -> list[str]:
        """Every step after the steps it depends on (definition order breaks ties)."""
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for name in self.steps:
            sorter.add(name, *self.upstream(name))
        try:
            sorter.prepare()
        except CycleError as exc:
            cycle = " → ".join(exc.args[1])
            raise ConfigError(
                f"pipeline {self.name!r} has a cycle: {cycle}; a step cannot (indirectly) "
                "read its own output"
            ) from exc
        ordered: list[str] = []
        position = list(self.steps).index
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position)
            ordered.extend(ready)
            sorter.done(*ready)
        return ordered

    def external_inputs(self, steps: Sequence[str] | None = None) -> list[str]:
        """Items the given steps (default: all) read that none of them writes."""
        chosen = list(steps) if steps is not None else list(self.steps)
        written = {o for s in chosen for o in self.steps[s].outputs}
        needed = [i for s in chosen for i in self.steps[s].inputs.values() if i not in written]
        return sorted(set(needed))

    def check_step_names(self, names: Iterable[str]) -> list[str]:
        """Return ``names`` if each is a step of this pipeline, else raise."""
        chosen = list(names)
        for name in chosen:
            if name not in self.steps:
                raise NotFoundError(
                    f"pipeline {self.name!r} has no step {name!r}; "
                    f"its steps are {', '.join(self.steps)}"
                )
        return chosen

    def _check_types(self) -> None:
        for step in self.steps.values():
            hints = step.param_annotations()
            for param, item in step.inputs.items():
                hint = hints.get(param)
                if is_dataset(item) and not _frame_like(hint):
                    raise ConfigError(
                        f"step {step.name!r} reads dataset {item} (a DataFrame) into "
                        f"{param!r} annotated as {_show(hint)}; annotate it pd.DataFrame"
                    )
                producer = self.producers.get(item)
                if producer is not None and hint is pd.DataFrame:
                    made = _single_return(self.steps[producer])
                    if made is not None and not _frame_like(made):
                        raise ConfigError(
                            f"step {step.name!r} reads {item} as a DataFrame but step "
                            f"{producer!r} returns {_show(made)}"
                        )
            made = _single_return(step)
            writes_dataset = bool(step.outputs) and is_dataset(step.outputs[0])
            if made is not None and writes_dataset and not _frame_like(made):
                raise ConfigError(
                    f"step {step.name!r} writes dataset {step.outputs[0]} but returns "
                    f"{_show(made)}; datasets are DataFrames (use artifacts/NAME for objects)"
                )


def _frame_like(hint: Any) -> bool:
    return hint is None or hint is Any or hint is pd.DataFrame


def _single_return(step: Step) -> Any:
    if len(step.outputs) != 1:
        return None
    return step.param_annotations().get("return")


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", repr(hint))


def load_module_pipeline(path: Path, name: str | None = None) -> Pipeline:
    """Import a pipeline module (a ``.py`` file) and collect its steps in definition order."""
    pipeline_name = name or path.stem
    if not path.is_file():
        raise NotFoundError(f"no pipeline module at {path}")
    module_name = f"{MODULE_PREFIX}{pipeline_name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # cloudpickle and child processes find it by name
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ConfigError(
            f"importing pipeline {pipeline_name!r} from {path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    steps = [value for value in vars(module).values() if isinstance(value, Step)]
    return Pipeline.from_steps(pipeline_name, steps)


def pipeline_modules(root: Path) -> dict[str, Path]:
    """The pipeline modules of a project: ``pipelines/NAME.py`` (not starting with ``_``)."""
    folder = root / PIPELINES_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")}
