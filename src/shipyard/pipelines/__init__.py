"""Pipelines: steps, the graph they imply, and the runner that executes them."""

from shipyard.pipelines.graph import Pipeline, load_module_pipeline, pipeline_modules
from shipyard.pipelines.steps import ARTIFACTS, Step, is_dataset, step

__all__ = [
    "ARTIFACTS",
    "Pipeline",
    "Step",
    "is_dataset",
    "load_module_pipeline",
    "pipeline_modules",
    "step",
]
