"""What the read APIs show a caller who is not an admin: no server paths, SQL or logins.

Batch jobs and dataset versions record where their data came from and went (a file's path,
a database URL and query, an object store URL) and who made them. A caller with an
``admin`` token sees them whole; anyone else (or any caller while auth is off) sees a file
or object by its name only, ``sql (hidden)`` for a database source, no ``created_by``, and
error messages with paths cut to file names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

#: Fields holding a location: shown as the file or object name only.
_LOCATIONS = ("input", "output", "source")
#: Fields never shown to a non-admin.
_PRIVATE = ("created_by",)
_FILE_KINDS = ("csv", "parquet", "json", "jsonl", "file", "folder")
_PATH = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*://|~|/)[^\s'\"]*/([^\s'\"/]+)")


def is_admin(request: Request) -> bool:
    """True when the request carries a token with the ``admin`` scope."""
    token = request.scope.get("state", {}).get("token")
    return token is not None and "admin" in token.scopes


def location(text: str) -> str:
    """``text`` (a job's input / output, a dataset's source) without paths, hosts or SQL."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "sql":
        return "sql (hidden)"
    if sep and kind in _FILE_KINDS:
        return f"{kind}:{_name(rest)}"
    if "://" in text or text.startswith(("/", "~", "./", "../")):
        return _name(text)
    return text  # a dataset reference (zone/name:version) or a plain label


def _name(text: str) -> str:
    path = urlsplit(text).path if "://" in text else text
    return path.rstrip("/").rsplit("/", 1)[-1] or "(hidden)"


def message(text: str) -> str:
    """An error message with every path or URL cut to its last part."""
    return _PATH.sub(r"…/\1", text)


def public(record: Mapping[str, Any], request: Request) -> dict[str, Any]:
    """``record`` as a caller of ``request`` may see it."""
    if is_admin(request):
        return dict(record)
    shown = {key: value for key, value in record.items() if key not in _PRIVATE}
    for key in _LOCATIONS:
        if isinstance(shown.get(key), str):
            shown[key] = location(shown[key])
    if isinstance(shown.get("error"), str):
        shown["error"] = message(shown["error"])
    return shown
