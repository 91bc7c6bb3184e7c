"""Finding a pipeline by name: a project module ``pipelines/NAME.py``, else a standard pipeline.

A ``[pipelines.NAME]`` table with ``kind = "standard"`` in shipyard.toml describes one of
the pipelines shipyard ships (built by :func:`shipyard.pipelines.standard.build_standard`).
"""

from __future__ import annotations

import importlib

from shipyard.core.exceptions import ConfigError, NotFoundError
from shipyard.core.settings import Settings
from shipyard.pipelines.graph import Pipeline, load_module_pipeline, pipeline_modules

STANDARD = "standard"


def pipeline_names(settings: Settings) -> list[str]:
    """Every pipeline the project defines: its modules and its ``[pipelines.NAME]`` tables."""
    return sorted({*pipeline_modules(settings.root), *settings.pipelines})


def resolve_pipeline(settings: Settings, name: str) -> Pipeline:
    """The pipeline called ``name`` in this project."""
    modules = pipeline_modules(settings.root)
    if name in modules:
        return load_module_pipeline(modules[name], name)
    table = settings.pipelines.get(name)
    if table is None:
        known = ", ".join(pipeline_names(settings)) or "none yet"
        raise NotFoundError(
            f"no pipeline {name!r} in {settings.root}; pipelines here: {known}. Write "
            f"pipelines/{name}.py with @step functions, or add [pipelines.{name}] with "
            'kind = "standard" to shipyard.toml'
        )
    kind = table.get("kind")
    if kind != STANDARD:
        raise ConfigError(
            f"[pipelines.{name}] in shipyard.toml has kind = {kind!r} and there is no "
            f"pipelines/{name}.py; set kind = {STANDARD!r} or write the module"
        )
    # Imported here: the standard pipelines pull in training libraries a project may not use.
    standard = importlib.import_module("shipyard.pipelines.standard")
    pipeline: Pipeline = standard.build_standard(settings, name)
    return pipeline
