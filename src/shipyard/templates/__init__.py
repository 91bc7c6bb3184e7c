"""The project template: what ``shipyard init NAME`` writes.

The files live next to this module, in ``project/``, as real files (package data):
``shipyard.toml`` (a CSV source, the standard ``train`` pipeline, a business value model,
stage gates), ``data/customers.csv``, ``pipelines/example.py``, ``notebooks/explore.ipynb``,
``tests/`` (unit, acceptance, integration), ``README.md``, ``pyproject.toml`` (pytest
settings) and ``gitignore`` (written as ``.gitignore``). ``__PROJECT_NAME__`` in
shipyard.toml and README.md is replaced by the project's name.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from shipyard.core.exceptions import ConflictError, InvalidArgumentError

__all__ = ["TEMPLATE", "create_project"]

#: The folder holding the template's files.
TEMPLATE = Path(__file__).resolve().with_name("project")

_PLACEHOLDER = "__PROJECT_NAME__"
# Files whose name cannot be shipped as is (a .gitignore would also apply to this package).
_RENAMED = {"gitignore": ".gitignore"}
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ipynb_checkpoints")


def create_project(root: Path, name: str) -> list[Path]:
    """Write a new project named ``name`` into the folder ``root``; return the files written.

    ``root`` must not exist or be empty (else :class:`ConflictError`). The files are
    written into a temporary folder next to ``root`` and renamed into place in one step,
    so an interrupted call leaves no half-written project.
    """
    if not name.strip() or not name.isprintable():
        raise InvalidArgumentError(
            f"a project name must be printable text on one line, got {name!r}"
        )
    root = Path(root).expanduser().absolute()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        what = "a file" if not root.is_dir() else "a folder that is not empty"
        raise ConflictError(
            f"{root} is {what}; give 'shipyard init' a new or empty folder for the project"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copytree(TEMPLATE, staging, ignore=_SKIPPED)
        for shipped, final in _RENAMED.items():
            (staging / shipped).rename(staging / final)
        for text_file in ("shipyard.toml", "README.md"):
            _fill(staging / text_file, name)
        if root.exists():
            root.rmdir()  # empty, checked above; a rename cannot replace a folder everywhere
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p for p in root.rglob("*") if p.is_file())


def _fill(path: Path, name: str) -> None:
    text = path.read_text(encoding="utf-8")
    # In TOML the name sits in a basic string: JSON's escapes are valid there.
    quoted = json.dumps(name, ensure_ascii=False)
    text = text.replace(f'"{_PLACEHOLDER}"', quoted).replace(_PLACEHOLDER, name)
    path.write_text(text, encoding="utf-8")
