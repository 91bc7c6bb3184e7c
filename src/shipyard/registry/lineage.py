"""Lineage: where a model version came from (code, data, run, who and when)."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.core.fingerprint import fingerprint_frame

if TYPE_CHECKING:
    import pandas as pd


def git_state(folder: Path) -> dict[str, Any]:
    """The commit, branch and dirty flag of the git working tree holding ``folder``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                ["git", *args],  # noqa: S607 - git from PATH, as the user runs it
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def dataset_fingerprints(datasets: Mapping[str, pd.DataFrame | str] | None) -> dict[str, str]:
    """Fingerprints of the datasets a model was trained or evaluated on (names -> sha256)."""
    import pandas as pd

    result: dict[str, str] = {}
    for name, data in (datasets or {}).items():
        result[str(name)] = fingerprint_frame(data) if isinstance(data, pd.DataFrame) else str(data)
    return result


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def build_lineage(
    *,
    root: Path,
    actor: str,
    at: datetime,
    datasets: Mapping[str, pd.DataFrame | str] | None,
    run_id: str | None,
    source: str | None,
    library: str | None,
) -> dict[str, Any]:
    """Everything recorded about a version's origin."""
    return {
        "git": git_state(root),
        "datasets": dataset_fingerprints(datasets),
        "run_id": run_id,
        "source": source,
        "registered_by": actor,
        "registered_at": at.isoformat(),
        "python": platform.python_version(),
        "shipyard": _version_of("shipyard"),
        "library": {library: _version_of(library)} if library else {},
    }
