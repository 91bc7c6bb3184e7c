"""Pipelines: steps, the graph they imply, and the runner that executes them."""

from typing import TYPE_CHECKING

from shipyard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.pipelines.graph import Pipeline, load_module_pipeline, pipeline_modules
    from shipyard.pipelines.steps import ARTIFACTS, Step, is_dataset, step

#: Each name's module, imported on first use: a submodule (``resolve``, ``progress``) loads
#: without the graph's pandas.
_LAZY = {
    "Pipeline": "shipyard.pipelines.graph",
    "load_module_pipeline": "shipyard.pipelines.graph",
    "pipeline_modules": "shipyard.pipelines.graph",
    "ARTIFACTS": "shipyard.pipelines.steps",
    "Step": "shipyard.pipelines.steps",
    "is_dataset": "shipyard.pipelines.steps",
    "step": "shipyard.pipelines.steps",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ARTIFACTS",
    "Pipeline",
    "Step",
    "is_dataset",
    "load_module_pipeline",
    "pipeline_modules",
    "step",
]
