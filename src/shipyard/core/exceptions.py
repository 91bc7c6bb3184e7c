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
    ├── MethodNotAllowedError (405)    a server route does not take this HTTP method
    ├── ConflictError (409)            the action clashes with the current state
    │   └── GateFailedError (409)      a stage gate refused a promotion
    ├── SchemaError (422)              input does not match a model's signature
    ├── PayloadTooLargeError (413)     a request is bigger than the server's limits
    ├── DataQualityError (422)         data failed a pipeline's quality checks
    ├── FlavorError (400)              a model format cannot be saved or loaded
    │   ├── UnsupportedModelError (400)
    │   └── MissingDependencyError (400)
    ├── UntrustedArtifactError (403)   loading would run code nobody trusted
    └── ArtifactIntegrityError (500)   a stored artifact no longer matches its sha256

Messages say what was expected, what arrived and how to fix it. They never carry more than a
short prefix of what a user sent: :func:`shorten` cuts any echoed value longer than
:data:`MAX_ECHO` characters (a 20 MB column name answers in a few hundred bytes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The most characters of one echoed value (a name, a value) an error message keeps.
MAX_ECHO = 100
#: The most characters of a whole message: beyond, its middle is cut.
MAX_MESSAGE = 4000
_LONG_WORD = re.compile(rf"\S{{{2 * MAX_ECHO + 1},}}")


def shorten(text: str) -> str:
    """``text`` with every run of more than ``2 * MAX_ECHO`` non-blank characters cut to its
    first :data:`MAX_ECHO` and an ellipsis, and at most :data:`MAX_MESSAGE` characters in all."""
    if len(text) <= 2 * MAX_ECHO:
        return text
    text = _LONG_WORD.sub(lambda m: f"{m.group()[:MAX_ECHO]}…", text)
    if len(text) > MAX_MESSAGE:
        keep = MAX_MESSAGE // 2
        text = f"{text[:keep]} … {text[-keep:]}"
    return text


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        message = shorten(message)
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


class MethodNotAllowedError(ShipyardError):
    """A server route exists but does not take the request's HTTP method."""

    status_code = 405


class ForbiddenError(ShipyardError):
    """The caller is known but may not do this (an API token limited to other models)."""

    status_code = 403


class ConflictError(ShipyardError):
    """The request clashes with the current state (e.g. deleting an aliased version)."""

    status_code = 409


class AlreadyHoldsError(ConflictError):
    """A promotion to a stage the version already holds: nothing to do (the CLI exits 0)."""


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
        self.column = shorten(column) if column is not None else None


class PayloadTooLargeError(ShipyardError):
    """A request is bigger than the server accepts (body, inflated body, rows, columns, text)."""

    status_code = 413


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
