"""The ``shipyard`` command: ``init``, ``quickstart``, ``models …`` and ``db …``.

Every command acts on the project found from the current folder upwards (the folder
holding shipyard.toml), or the one named with ``--project``. A :class:`ShipyardError`
prints one line and exits with status 1, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli.context import Group, ProjectOption, open_project
from shipyard.cli.datasets import datasets_app
from shipyard.cli.feedback import feedback_app
from shipyard.cli.models import models_app
from shipyard.cli.monitor import monitor_command, profile_command
from shipyard.cli.orchestrate import export_app, scheduler
from shipyard.cli.package import build_command, compose_command
from shipyard.cli.predict import predict_command, predictions_app
from shipyard.cli.runs import run_command, runs_app
from shipyard.cli.serve import serve_command
from shipyard.cli.tokens import tokens_app
from shipyard.render import console

app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
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
app.add_typer(models_app, name="models")
app.add_typer(datasets_app, name="datasets")
app.add_typer(runs_app, name="runs")
app.command("run")(run_command)
app.command()(scheduler)
app.command("serve")(serve_command)
app.command("predict")(predict_command)
app.add_typer(predictions_app, name="predictions")
app.add_typer(tokens_app, name="tokens")
app.add_typer(feedback_app, name="feedback")
app.command("monitor")(monitor_command)
app.command("profile")(profile_command)
app.add_typer(export_app, name="export")
app.command("build")(build_command)
app.command("compose")(compose_command)


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
) -> None:
    """Create a working project: settings, sample data, pipelines, notebook and tests."""
    from shipyard.project import Project
    from shipyard.templates import create_project

    if bare:
        Project.init(directory, name=name).close()
        written = [directory / "shipyard.toml"]
    else:
        written = create_project(directory, name or directory.resolve().name)
    with Project(directory) as project:  # creates and migrates the metadata database
        console.print(
            f"Created shipyard project [bold]{project.settings.project.name}[/bold] in "
            f"{project.root} ({len(written)} files)"
        )
        console.print(f"  database: {project.settings.database_url}")
        console.print(f"  artifacts: {project.settings.artifacts_url}")
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
