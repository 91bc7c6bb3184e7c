"""The one exception tree of shipyard.

Every class carries the HTTP status a server answers with, so entry points map
failures in one place (the CLI prints one line, the server one JSON body)::

    ShipyardError (500)
    ├── ConfigError (400)              shipyard.toml or an environment variable is wrong
    ├── InvalidArgumentError (400)     an argument to a call or command is wrong
    ├── ProjectNotFoundError (404)     no shipyard.toml here or above
    ├── DataSourceError (502)          a data source (file, database, URL) could not be read
    ├── InvalidReferenceError (400)    "churn@@x" is not a model reference
    ├── NotFoundError (404)            a model, version or alias does not exist
    │   └── EmptyWindowError (404)     a monitoring window holds no rows
    ├── ConflictError (409)            the action clashes with the current state
    │   └── GateFailedError (409)      a stage gate refused a promotion
    ├── SchemaError (422)              input does not match a model's signature
    ├── DataQualityError (422)         data failed a pipeline's quality checks
    ├── FlavorError (400)              a model format cannot be saved or loaded
    │   ├── UnsupportedModelError (400)
    │   └── MissingDependencyError (400)
    ├── UntrustedArtifactError (403)   loading would run code nobody trusted
    └── ArtifactIntegrityError (500)   a stored artifact no longer matches its sha256

Messages say what was expected, what arrived and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(ShipyardError):
    """shipyard.toml or a ``SHIPYARD_*`` variable holds a value shipyard cannot use."""

    status_code = 400


class InvalidArgumentError(ShipyardError):
    """An argument given to a function or command cannot be used as it is."""

    status_code = 400


class ProjectNotFoundError(ShipyardError):
    """No shipyard project (a folder with shipyard.toml) was found."""

    status_code = 404


class DataSourceError(ShipyardError):
    """A data source (a file, a database query, a URL) could not be read."""

    status_code = 502


class InvalidReferenceError(ShipyardError):
    """A model reference is not ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``."""

    status_code = 400


class NotFoundError(ShipyardError):
    """A registered model, version, alias or artifact does not exist."""

    status_code = 404


class EmptyWindowError(NotFoundError):
    """A monitoring window holds no rows (a quiet hour, or a window outside the log)."""


class ConflictError(ShipyardError):
    """The request clashes with the current state (e.g. deleting an aliased version)."""

    status_code = 409


class GateFailedError(ConflictError):
    """A stage gate refused a promotion; ``failures`` lists the rules that failed."""

    def __init__(self, message: str, failures: Sequence[dict[str, Any]]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class SchemaError(ShipyardError):
    """Input data does not match the model's signature; ``column`` names the culprit."""

    status_code = 422

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column


class DataQualityError(ShipyardError):
    """Data failed the quality checks of a pipeline; ``failures`` lists each failed check."""

    status_code = 422

    def __init__(self, message: str, failures: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(message)
        self.failures = [dict(f) for f in failures]


class FlavorError(ShipyardError):
    """A model cannot be saved or loaded in the format asked for."""

    status_code = 400


class UnsupportedModelError(FlavorError):
    """No flavor knows how to store this object or file."""


class MissingDependencyError(FlavorError):
    """The library a model format needs is not installed."""


class UntrustedArtifactError(ShipyardError):
    """Loading the artifact would execute code or types nobody trusted at registration."""

    status_code = 403


class ArtifactIntegrityError(ShipyardError):
    """A stored artifact's bytes no longer hash to the digest recorded for it."""

    status_code = 500
