"""``shipyard tokens …``: API tokens for the model server (``shipyard serve --auth``).

``create`` prints the secret once (only its sha256 is stored); ``list`` never shows it;
``revoke`` stops a token — running servers drop it at their next refresh (30 s).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.render import console, print_json

# ``registry.tokens.SCOPES``, written out: importing it would load SQLAlchemy for every
# ``shipyard --help`` (tests/cli/test_startup.py checks the two agree).
SCOPES_HELP = "What it allows (repeatable): predict, read, admin."

tokens_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="API tokens for the model server (enforced with shipyard serve --auth).",
    no_args_is_help=True,
)


@tokens_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the token (who or what uses it).")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help=SCOPES_HELP),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Only this model may be predicted on and labelled with the token (repeat for "
            "several; default: every model).",
        ),
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Make a token and print it once: store it now, it cannot be shown again."""
    opened = open_project(ctx, project)
    secret, info = opened.tokens.create(name, scope or [], opened.settings.actor, model)
    limited = f"; models: {', '.join(info.models)}" if info.models is not None else ""
    console.print(
        f"created token [bold]{info.name}[/bold] (scopes: {', '.join(info.scopes)}{limited}); "
        "it is shown once, store it now:",
        soft_wrap=True,
    )
    typer.echo(secret)


@tokens_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False, project: ProjectOption = None) -> None:
    """Every token: name, scopes, who made it, last use, revoked (never the secret)."""
    tokens = open_project(ctx, project).tokens.list()
    if as_json:
        print_json([t.to_dict() for t in tokens])
        return
    table = Table(title="API tokens")
    for column in ("name", "scopes", "models", "status", "created", "by", "last used"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            t.name,
            ", ".join(t.scopes),
            ", ".join(t.models) if t.models is not None else "all",
            "active" if t.active else f"revoked {t.revoked_at:%Y-%m-%d %H:%M}",
            f"{t.created_at:%Y-%m-%d %H:%M}",
            t.created_by,
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token to revoke.")],
    project: ProjectOption = None,
) -> None:
    """Revoke a token; servers stop accepting it at their next refresh (within 30 s)."""
    info = open_project(ctx, project).tokens.revoke(name)
    console.print(f"revoked token [bold]{info.name}[/bold]")
