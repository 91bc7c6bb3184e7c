"""The shell steps of the generated CI files, in the order each CI system runs them.

``steps(system, root)`` reads the file ``shipyard ci`` wrote for ``system`` and returns its
steps: GitHub's ``run:`` scripts (jobs in ``needs`` order, with ``working-directory``),
GitLab's ``before_script`` + ``script`` lines (jobs in ``stages`` order), and the
Jenkinsfile's ``sh '…'`` steps (stages in order, inside ``dir('…') { }`` where they are).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from shipyard.templates.ci import CI_FILES


@dataclass(frozen=True)
class Step:
    """One shell step: where it sits (job or stage), its folder, its script."""

    where: str
    cwd: str
    script: str


def steps(system: str, root: Path) -> list[Step]:
    """The shell steps of ``system``'s file in ``root``."""
    text = (root / CI_FILES[system][1]).read_text(encoding="utf-8")
    return {"github": _github, "gitlab": _gitlab, "jenkins": _jenkins}[system](text)


def _github(text: str) -> list[Step]:
    jobs = yaml.safe_load(text)["jobs"]
    ordered: list[str] = []
    while len(ordered) < len(jobs):  # a job after the ones it needs
        for name, job in jobs.items():
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if name not in ordered and set(needs) <= set(ordered):
                ordered.append(name)
    found = []
    for name in ordered:
        for step in jobs[name]["steps"]:
            if "run" in step:
                where = f"{name}: {step.get('name', '')}"
                found.append(Step(where, step.get("working-directory", "."), step["run"]))
    return found


def _gitlab(text: str) -> list[Step]:
    data = yaml.safe_load(text)
    stages = data["stages"]
    before = data.get("default", {}).get("before_script", [])
    jobs = [
        (name, job)
        for name, job in data.items()
        if isinstance(job, dict) and "script" in job and not name.startswith(".")
    ]
    jobs.sort(key=lambda item: stages.index(item[1]["stage"]))
    found = []
    for name, job in jobs:
        for line in [*job.get("before_script", before), *job["script"]]:
            found.append(Step(name, ".", line))
    return found


_STAGE = re.compile(r"^\s*stage\('([^']+)'\)")
_SH = re.compile(r"^\s*sh '(.*)'\s*$")
_DIR = re.compile(r"^\s*dir\('([^']+)'\)\s*\{\s*$")


def jenkins_stages(text: str) -> list[str]:
    """The declarative pipeline's stage names, in order."""
    return [m.group(1) for line in text.splitlines() if (m := _STAGE.match(line))]


def _jenkins(text: str) -> list[Step]:
    found = []
    stage, folders, depth = "", [(".", -1)], 0
    for line in text.splitlines():
        if line.strip().startswith("//"):
            continue
        if m := _STAGE.match(line):
            stage = m.group(1)
        if m := _DIR.match(line):
            folders.append((m.group(1), depth))
        elif m := _SH.match(line):
            found.append(Step(stage, folders[-1][0], m.group(1)))
        depth += line.count("{") - line.count("}")
        if len(folders) > 1 and depth <= folders[-1][1]:
            folders.pop()
    return found
