"""``shipyard ci``: write the project's delivery pipelines for Jenkins, GitHub and GitLab.

With no system named, all three are written. The files are rendered from the project's
settings (the default pipeline's model and the stage its candidate waits at, the image's
tag), so run it again with ``--force`` after changing those. An existing file is kept
unless ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import ProjectOption, project_option
from shipyard.render import console


def ci_command(
    ctx: typer.Context,
    jenkins: Annotated[bool, typer.Option("--jenkins", help="Write Jenkinsfile.")] = False,
    github: Annotated[
        bool, typer.Option("--github", help="Write .github/workflows/shipyard.yml.")
    ] = False,
    gitlab: Annotated[bool, typer.Option("--gitlab", help="Write .gitlab-ci.yml.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    project: ProjectOption = None,
) -> None:
    """Write CI/CD pipelines: lint, tests, train, gate, image, deploy (all three by default)."""
    from shipyard.core.settings import Settings, find_project_root
    from shipyard.templates.ci import SYSTEMS, ci_values, write_ci

    root = find_project_root(project_option(ctx, project) or Path.cwd())
    named = [s for s, wanted in zip(SYSTEMS, (jenkins, github, gitlab), strict=True) if wanted]
    written = write_ci(root, named or SYSTEMS, force=force)
    values = ci_values(Settings.load(root, environ={}))
    for path in written:
        console.print(f"wrote {path.relative_to(root)}", soft_wrap=True, markup=False)
    console.print(
        f"  train: shipyard run {values.pipeline}; gate: {values.candidate} → {values.stage}; "
        f"image: {values.image}; deploy: on main, after a manual approval",
        soft_wrap=True,
        markup=False,
    )
