"""The ``shipyard`` command: ``init``, ``quickstart``, ``models …`` and ``db …``.

Every command acts on the project found from the current folder upwards (the folder
holding shipyard.toml), or the one named with ``--project``. A :class:`ShipyardError`
prints one line and exits with status 1, never a traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

from shipyard.cli.context import Group, ProjectOption, open_project
from shipyard.render import console

#: The commands and groups of other modules: ``name: (module, attribute)``, imported when
#: run (or when ``--help`` lists them), so a command imports no other command's module.
#: A Typer is a group, a function a command.
LAZY: dict[str, tuple[str, str]] = {
    "models": ("shipyard.cli.models", "models_app"),
    "datasets": ("shipyard.cli.datasets", "datasets_app"),
    "runs": ("shipyard.cli.runs", "runs_app"),
    "run": ("shipyard.cli.runs", "run_command"),
    "scheduler": ("shipyard.cli.orchestrate", "scheduler"),
    "serve": ("shipyard.cli.serve", "serve_command"),
    "predict": ("shipyard.cli.predict", "predict_command"),
    "predictions": ("shipyard.cli.predict", "predictions_app"),
    "tokens": ("shipyard.cli.tokens", "tokens_app"),
    "feedback": ("shipyard.cli.feedback", "feedback_app"),
    "monitor": ("shipyard.cli.monitor", "monitor_command"),
    "profile": ("shipyard.cli.monitor", "profile_command"),
    "export": ("shipyard.cli.orchestrate", "export_app"),
    "build": ("shipyard.cli.package", "build_command"),
    "compose": ("shipyard.cli.package", "compose_command"),
    "ui": ("shipyard.cli.ui", "ui_command"),
    "gate": ("shipyard.cli.gate", "gate_command"),
    "ci": ("shipyard.cli.ci", "ci_command"),
}


class RootGroup(Group):
    """The ``shipyard`` group: the commands of :data:`LAZY` are built when first asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        """As Typer lists what it registers: the commands, then the groups (``db`` first)."""
        lazy = {name: self.get_command(ctx, name) for name in LAZY}
        declared = {n: c for n, c in self.commands.items() if n not in LAZY}

        def commands(found: dict[str, Any], groups: bool) -> list[str]:
            return [n for n, c in found.items() if isinstance(c, TyperGroup) is groups]

        return [
            *commands(lazy, False),
            *commands(declared, False),
            *commands(declared, True),
            *commands(lazy, True),
        ]

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """As Typer resolves it; an unknown name loads every command first, for suggestions."""
        if args and args[0] not in self.commands and args[0] not in LAZY:
            self.list_commands(ctx)
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command ``cmd_name``, importing its module the first time."""
        if cmd_name not in self.commands and cmd_name in LAZY:
            module, attribute = LAZY[cmd_name]
            target = getattr(importlib.import_module(module), attribute)
            self.add_command(_click_command(cmd_name, target), cmd_name)
        return super().get_command(ctx, cmd_name)


def _click_command(name: str, target: Any) -> Any:
    """What ``app.add_typer(target, name=name)`` or ``app.command(name)(target)`` registers."""
    if isinstance(target, typer.Typer):
        return get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    return get_command_from_info(
        CommandInfo(name=name, callback=target),
        pretty_exceptions_short=app.pretty_exceptions_short,
        rich_markup_mode=app.rich_markup_mode,
    )


app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=RootGroup,
    name="shipyard",
    help="Carry a model from a notebook to production, and keep it healthy there.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    cls=Group, rich_markup_mode=None, help="The metadata database.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


@app.callback()
def _root(ctx: typer.Context, project: ProjectOption = None) -> None:
    ctx.obj = {"project": project}


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new project (new or empty).")],
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
    bare: Annotated[
        bool, typer.Option(help="Only shipyard.toml and .shipyard/ (no template files).")
    ] = False,
    git: Annotated[
        bool,
        typer.Option(
            help="Make the project a git repository with a first commit (unless it sits "
            "inside one already)."
        ),
    ] = True,
) -> None:
    """Create a working project: settings, sample data, pipelines, notebook, tests and CI/CD
    pipelines (Jenkins, GitHub Actions, GitLab CI)."""
    from shipyard.project import Project
    from shipyard.templates import create_project

    if bare:
        Project.init(directory, name=name).close()
        written = [directory / "shipyard.toml"]
    else:
        from shipyard.templates.ci import write_ci

        written = create_project(directory, name or directory.resolve().name)
        written += write_ci(directory)
    with Project(directory) as project:  # creates and migrates the metadata database
        console.print(
            f"Created shipyard project [bold]{project.settings.project.name}[/bold] in "
            f"{project.root} ({len(written)} files)"
        )
        console.print(f"  database: {project.settings.database_url}")
        console.print(f"  artifacts: {project.settings.artifacts_url}")
    if git:
        from shipyard.templates.git import init_repository

        console.print(f"  code: {init_repository(Path(directory).absolute())}", soft_wrap=True)
    if not bare:
        console.print(f"Next: cd {directory} && shipyard run train && shipyard models list")


@app.command()
def quickstart(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project.")] = Path(
        "demo-project"
    ),
) -> None:
    """Run the demo: train a churn model, register it and promote it through the gates."""
    from shipyard.demo.quickstart import run_quickstart

    run_quickstart(directory, console)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, project: ProjectOption = None) -> None:
    """Migrate the metadata database to the newest schema (also done on every open)."""
    database = open_project(ctx, project).database
    revision = database.upgrade()
    console.print(f"database {database.url.render_as_string()} is at revision {revision}")


@db_app.command("current")
def db_current(ctx: typer.Context, project: ProjectOption = None) -> None:
    """Show the schema revision of the metadata database and the newest one known."""
    from shipyard.store import head_revision

    database = open_project(ctx, project).database
    console.print(f"current: {database.current_revision()}  newest: {head_revision()}")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="shipyard")
