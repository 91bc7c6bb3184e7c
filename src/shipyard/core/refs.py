"""Model references: ``NAME`` (newest), ``NAME:3`` (version 3), ``NAME@production`` (alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from shipyard.core.exceptions import InvalidReferenceError

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
NAME_RE = re.compile(rf"^{_NAME}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_REF_RE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<version>[0-9]+)|@(?P<alias>[^@:]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference; at most one of ``version`` and ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``."""
        match = _REF_RE.match(text.strip())
        if not match:
            raise InvalidReferenceError(
                f"{text!r} is not a model reference; write NAME, NAME:VERSION (e.g. churn:3) "
                "or NAME@ALIAS (e.g. churn@production)"
            )
        version = match.group("version")
        alias = match.group("alias")
        if alias is not None:
            check_alias(alias)
        return cls(match.group("name"), _version(version, text), alias)


#: Versions are stored as 32-bit integers.
MAX_VERSION = 2**31 - 1


def _version(digits: str | None, text: str) -> int | None:
    """The version number ``digits`` of the reference ``text`` (None when it has none)."""
    if not digits:
        return None
    if len(digits) > 10 or int(digits) > MAX_VERSION:
        raise InvalidReferenceError(
            f"reference {text[:80]!r} has version {digits[:20]}{'…' if len(digits) > 20 else ''}"
            f", beyond the largest version number ({MAX_VERSION}); give a version that exists"
        )
    return int(digits)


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid model name, else raise."""
    if not NAME_RE.match(name):
        raise InvalidReferenceError(
            f"{name!r} is not a valid model name: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (at most 128 characters)"
        )
    return name


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias, else raise."""
    if not ALIAS_RE.match(alias):
        raise InvalidReferenceError(
            f"{alias!r} is not a valid alias: start with a letter, then letters, digits, "
            "'_' or '-' (e.g. production, champion)"
        )
    if alias.isdigit():
        raise InvalidReferenceError(f"{alias!r} is not a valid alias: it may not be a number")
    return alias


#: The dataset zones, in the order data flows through them.
ZONES = ("raw", "processed", "predictions")
_DATASET_RE = re.compile(rf"^(?P<zone>[a-z]+)/(?P<name>{_NAME})(?::(?P<version>[0-9]+))?$")


@dataclass(frozen=True)
class DatasetRef:
    """``ZONE/NAME`` (newest version) or ``ZONE/NAME:VERSION``, e.g. ``raw/customers:3``."""

    zone: str
    name: str
    version: int | None = None

    def __str__(self) -> str:
        base = f"{self.zone}/{self.name}"
        return base if self.version is None else f"{base}:{self.version}"

    @property
    def key(self) -> str:
        """``ZONE/NAME`` without the version."""
        return f"{self.zone}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        """Parse ``ZONE/NAME`` or ``ZONE/NAME:VERSION``."""
        match = _DATASET_RE.match(text.strip())
        if not match or match.group("zone") not in ZONES:
            raise InvalidReferenceError(
                f"{text!r} is not a dataset reference; write ZONE/NAME or ZONE/NAME:VERSION "
                f"with ZONE one of {', '.join(ZONES)} (e.g. raw/customers:3)"
            )
        version = match.group("version")
        return cls(match.group("zone"), match.group("name"), _version(version, text))


def is_dataset_ref(text: str) -> bool:
    """True when ``text`` is ``ZONE/NAME[:VERSION]`` with a known zone (not a path on disk)."""
    zone = text.split("/", 1)[0]
    return zone in ZONES and "/" in text and not Path(text).exists()
