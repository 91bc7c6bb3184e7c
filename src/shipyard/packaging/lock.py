"""The image's pinned dependencies: a lock read from what is installed, and a wheelhouse.

The lock is the dependency closure of ``shipyard[EXTRAS]`` (plus any extra requirements)
as installed in the running environment: every distribution at its installed version, so
the image runs what was tested here. The wheelhouse holds one wheel per pin, built on the
host with ``pip wheel`` (its cache is reused between builds), and the lock carries each
wheel's sha256 so the image installs with ``pip --require-hashes --no-index``: the build
itself needs no network and cannot pick up anything else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from shipyard.core.exceptions import ConfigError, ShipyardError

#: The distribution this package is.
SELF = "shipyard"


@dataclass(frozen=True)
class Pin:
    """One locked distribution: its canonical name and installed version."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def closure(requirements: Iterable[str]) -> list[Pin]:
    """Every installed distribution ``requirements`` need, transitively, sorted by name.

    A requirement whose distribution is not installed raises :class:`ConfigError` naming
    it (install it here first, so the image runs what was tested).
    """
    pins: dict[str, Pin] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue: list[tuple[Requirement, str]] = [
        (_parse(text, "the image's requirements"), "the image") for text in requirements
    ]
    while queue:
        requirement, wanted_by = queue.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise ConfigError(
                f"{requirement.name} (needed by {wanted_by}) is not installed here; install it "
                f"(pip install '{requirement}') so the image runs what you tested"
            ) from exc
        pins[name] = Pin(name, dist.version)
        for text in dist.requires or []:
            needed = _parse(text, name)
            if _applies(needed, requirement.extras):
                queue.append((needed, name))
    return sorted(pins.values(), key=lambda pin: pin.name)


def _parse(text: str, owner: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"{owner} declares an invalid requirement {text!r}: {exc}") from exc


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def source_folder() -> Path:
    """The folder shipyard was installed from (``pip install [-e] FOLDER``), to build its wheel."""
    dist = metadata.distribution(SELF)
    text = dist.read_text("direct_url.json")
    info = json.loads(text) if text else {}
    url = str(info.get("url", ""))
    if "dir_info" in info and url.startswith("file://"):
        folder = Path(url.removeprefix("file://"))
        if (folder / "pyproject.toml").is_file():
            return folder
    raise ShipyardError(
        "shipyard was not installed from a source folder, so its wheel cannot be built for the "
        "image; install it with 'pip install -e PATH' (or 'pip install PATH') from its source"
    )


def wheel_cache() -> Path:
    """Where wheels built for images are kept between builds (``~/.cache/shipyard/wheels``)."""
    return Path.home() / ".cache" / "shipyard" / "wheels"


def build_wheelhouse(pins: list[Pin], target: Path, cache: Path | None = None) -> list[Path]:
    """One wheel per pin (and shipyard's own) in ``target``; return the wheels.

    Wheels already in ``cache`` are reused; the others are built with ``pip wheel`` into
    the cache first. A pin that pip cannot provide raises :class:`ShipyardError` with
    pip's own message.
    """
    cache = cache or wheel_cache()
    cache.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    others = [pin for pin in pins if pin.name != SELF]
    missing = [pin for pin in others if _cached(cache, pin) is None]
    if missing:
        _pip_wheel(["--no-deps", *(str(pin) for pin in missing)], cache)
    wheels = []
    for pin in others:
        found = _cached(cache, pin)
        if found is None:
            raise ShipyardError(f"pip built no wheel for {pin}; see its output above")
        wheels.append(_link(found, target))
    with_self = [pin for pin in pins if pin.name == SELF]
    if with_self:
        built = target / ".self"
        _pip_wheel(["--no-deps", str(source_folder())], built)
        for wheel in built.glob("*.whl"):
            wheels.append(wheel.rename(target / wheel.name))
        shutil.rmtree(built)
    return wheels


def _cached(cache: Path, pin: Pin) -> Path | None:
    for wheel in cache.glob("*.whl"):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        if name == pin.name and str(version) == pin.version:
            return wheel
    return None


def _link(wheel: Path, target: Path) -> Path:
    destination = target / wheel.name
    try:
        destination.hardlink_to(wheel)
    except OSError:  # another file system
        shutil.copy2(wheel, destination)
    return destination


def _pip_wheel(arguments: list[str], folder: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(folder)]
    done = subprocess.run([*command, *arguments], capture_output=True, text=True, check=False)  # noqa: S603 - a fixed argument list, no shell
    if done.returncode != 0:
        raise ShipyardError(
            f"pip could not build the image's wheels ({' '.join(arguments[:4])}…): "
            f"{done.stderr.strip()[-800:]}"
        )


def lock_text(wheels: list[Path]) -> str:
    """``requirements.lock``: ``name==version --hash=sha256:…`` for every wheel, sorted."""
    lines = ["# Generated by 'shipyard build': every distribution the image installs, pinned", ""]
    for wheel in sorted(wheels, key=lambda w: w.name.lower()):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"
