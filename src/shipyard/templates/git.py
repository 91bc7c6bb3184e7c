"""Code versioning for a new project: ``shipyard init`` makes it a git repository.

The project becomes a repository with a first commit of the template (its ``.gitignore``
keeps the metadata database, artifacts, runs, reports and generated secrets out), unless
it already sits inside a git working tree (its files then belong to that repository), the
user asked ``--no-git``, or git is not installed (said, not an error). The registry records
each version's commit (:func:`shipyard.registry.lineage.git_state`), so a model can always be
traced back to the code that made it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: Who makes the first commit when the user has no git identity configured.
FALLBACK_IDENTITY = ("shipyard init", "shipyard@localhost")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        ["git", *args],  # noqa: S607 - git from PATH, as the user runs it
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def init_repository(root: Path) -> str:
    """Make ``root`` a git repository with a first commit; return what was done, for people."""
    if shutil.which("git") is None:
        return "git is not installed: the project is not under version control (install git)"
    inside = _git(root, "rev-parse", "--show-toplevel")
    if inside.returncode == 0:
        return f"inside the git repository {inside.stdout.strip()}: commit the project there"
    steps = [("init", "-q"), ("add", "-A")]
    for step in steps:
        done = _git(root, *step)
        if done.returncode != 0:
            return f"git {' '.join(step)} failed: {done.stderr.strip()[:200]}"
    identity: list[str] = []
    for key, fallback in zip(("user.name", "user.email"), FALLBACK_IDENTITY, strict=True):
        if _git(root, "config", key).returncode != 0:
            identity += ["-c", f"{key}={fallback}"]
    done = _git(root, *identity, "commit", "-q", "-m", "shipyard init: the project template")
    if done.returncode != 0:
        return f"git commit failed: {done.stderr.strip()[:200]}"
    head = _git(root, "rev-parse", "--short", "HEAD").stdout.strip()
    return f"git repository with a first commit ({head})"
