"""What every command shares: finding the project and turning errors into one line.

Command modules import at their top only what their signatures need (Typer, rich's markup);
everything a command does is imported when it runs, and a command module itself only when
its command runs (``cli/app.py``'s ``LAZY``), so ``shipyard --help`` and the listing commands
start without pandas, scikit-learn, the server, Alembic or fsspec, and a listing without the
other commands (``tests/cli/test_startup.py`` checks it). Opening a project imports the
store's libraries with the cyclic garbage collector paused (:func:`collector_paused`), then
freezes what it imported for the rest of the command (:func:`gc.freeze`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from shipyard.core.exceptions import ShipyardError
from shipyard.render import err_console

if TYPE_CHECKING:
    from shipyard.project import Project


class Group(TyperGroup):
    """Turns shipyard's own errors into clean one-line messages."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ShipyardError as exc:
            err_console.print(f"[red]error:[/red] {escape(exc.message)}", soft_wrap=True)
            raise typer.Exit(1) from exc
        except (OSError, MemoryError) as exc:
            # Not shipyard's own failure (a full disk, a permission): say what, not a traceback.
            if os.environ.get("SHIPYARD_DEBUG"):
                raise
            err_console.print(
                f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')} "
                "(set SHIPYARD_DEBUG=1 for the traceback)",
                soft_wrap=True,
            )
            raise typer.Exit(1) from exc


ProjectOption = Annotated[
    Path | None,
    typer.Option(
        "--project", "-p", help="Project folder (default: found from the current folder up)."
    ),
]


def project_option(ctx: typer.Context, project: Path | None = None) -> Path | None:
    """The folder ``--project`` names, here or on a parent command (``shipyard -p DIR …``)."""
    current: Any = ctx
    while project is None and current is not None:
        if isinstance(current.obj, dict) and current.obj.get("project"):
            return Path(current.obj["project"])
        current = current.parent
    return project


def open_project(ctx: typer.Context, project: Path | None = None) -> Project:
    """Open the project named by ``--project`` (here or on a parent command) or found upwards."""
    chosen = project_option(ctx, project)
    with collector_paused():  # opening imports the store's libraries
        from shipyard.project import Project

        opened = Project(chosen or Path.cwd())
        # What opening imported stays: later collections skip it until the command ends.
        gc.freeze()
    ctx.call_on_close(gc.unfreeze)
    ctx.call_on_close(opened.close)
    return opened


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block without Python's cyclic garbage collector.

    Importing libraries allocates a few hundred thousand objects, none of them garbage:
    the collector would scan them over and over (a tenth of ``shipyard models list``).
    Nested blocks leave the collector to the outermost one.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
