"""shipyard: carry a machine learning model from a notebook to production, and keep it healthy.

The Python surface mirrors the CLI::

    import shipyard
    project = shipyard.Project(".")
    version = project.registry.register("churn", model, input_example=X_train, trust=True)
    project.registry.promote(version.ref, to="production")
    model = project.registry.load("churn@production")
    model.predict(rows)
"""

from typing import TYPE_CHECKING

from shipyard.core.exceptions import (
    ArtifactIntegrityError,
    ConfigError,
    ConflictError,
    DataQualityError,
    DataSourceError,
    EmptyWindowError,
    FlavorError,
    GateFailedError,
    InvalidArgumentError,
    InvalidReferenceError,
    MissingDependencyError,
    NotFoundError,
    ProjectNotFoundError,
    SchemaError,
    ShipyardError,
    UnsupportedModelError,
    UntrustedArtifactError,
)
from shipyard.core.lazy import lazy_exports
from shipyard.core.refs import ModelRef
from shipyard.core.schema import ColumnSpec, OutputSpec, Signature

if TYPE_CHECKING:
    from shipyard.core.settings import Settings
    from shipyard.flavors import LoadedModel
    from shipyard.pipelines import step
    from shipyard.project import Project

__version__ = "0.1.0"

#: Imported on first use, so ``import shipyard.statistics`` (a monitoring job, a benchmark)
#: does not load the server, the engines and every model library with it, and the
#: ``shipyard`` command starts without pydantic, pandas or SQLAlchemy.
_LAZY = {
    "LoadedModel": "shipyard.flavors",
    "Project": "shipyard.project",
    "Settings": "shipyard.core.settings",
    "step": "shipyard.pipelines",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "ArtifactIntegrityError",
    "ColumnSpec",
    "ConfigError",
    "ConflictError",
    "DataQualityError",
    "DataSourceError",
    "EmptyWindowError",
    "FlavorError",
    "GateFailedError",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "LoadedModel",
    "MissingDependencyError",
    "ModelRef",
    "NotFoundError",
    "OutputSpec",
    "Project",
    "ProjectNotFoundError",
    "SchemaError",
    "Settings",
    "ShipyardError",
    "Signature",
    "UnsupportedModelError",
    "UntrustedArtifactError",
    "__version__",
    "step",
]
