"""``shipyard models …``: register, inspect, promote and retire model versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shipyard.cli.context import Group, JsonOption, ProjectOption, open_project
from shipyard.core.exceptions import AlreadyHoldsError, GateFailedError, InvalidArgumentError
from shipyard.render import (
    console,
    gate_lines,
    history_table,
    models_table,
    print_json,
    show_version,
    versions_table,
)

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.registry import VersionInfo

models_app = typer.Typer(
    rich_markup_mode=None,  # help texts name settings as [section] key: print them as written
    cls=Group,
    help="Registered models and their versions.",
    no_args_is_help=True,
)

TrustOption = Annotated[
    bool, typer.Option("--trust", help="Trust every type or pickle the model needs (recorded).")
]
TrustTypeOption = Annotated[
    list[str] | None,
    typer.Option("--trust-type", help="Trust one type the model needs (repeatable)."),
]
ExampleOption = Annotated[
    Path | None,
    typer.Option(
        "--input-example", help="CSV, Parquet or JSON rows the signature is inferred from."
    ),
]
KeyValues = Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable).")]


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"{option} expects KEY=VALUE but got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _read_rows(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.is_file():
        raise InvalidArgumentError(f"--input-example {path} is not a file")
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, orient="records", lines=suffix == ".jsonl")
    raise InvalidArgumentError(
        f"--input-example {path}: expected a .csv, .parquet, .json or .jsonl file"
    )


def _register(
    ctx: typer.Context,
    *,
    project: Path | None,
    source: Path,
    name: str,
    flavor: str | None,
    trust: bool,
    trust_type: list[str] | None,
    input_example: Path | None,
    metric: list[str] | None,
    param: list[str] | None,
    tag: list[str] | None,
    description: str,
    as_json: bool,
) -> None:
    opened = open_project(ctx, project)
    metrics: dict[str, float] = {}
    for key, value in _pairs(metric, "--metric").items():
        try:
            metrics[key] = float(value)
        except ValueError as exc:
            raise InvalidArgumentError(f"--metric {key} must be a number, got {value!r}") from exc
    info = opened.registry.register(
        name,
        path=source,
        flavor=flavor,
        input_example=_read_rows(input_example) if input_example else None,
        metrics=metrics,
        params=_pairs(param, "--param"),
        tags=_pairs(tag, "--tag"),
        description=description,
        trust=trust,
        trusted_types=trust_type,
    )
    if as_json:
        print_json(info.to_dict())
        return
    console.print(f"Registered [bold]{info.ref}[/bold] ({info.flavor}) from {source}")
    if info.trusted_types:
        console.print(f"  trusted: {', '.join(info.trusted_types)}")
    for note in info.flavor_config.get("notes", []):
        console.print(f"  {note}", markup=False)
    if info.signature is None:
        console.print("  [yellow]no signature: pass --input-example to validate input[/yellow]")


@models_app.command("register")
def register(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Model file or folder (.skops, .onnx, ...).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    flavor: Annotated[str | None, typer.Option(help="Format, when the file does not say.")] = None,
    trust: TrustOption = False,
    trust_type: TrustTypeOption = None,
    input_example: ExampleOption = None,
    metric: KeyValues = None,
    param: KeyValues = None,
    tag: KeyValues = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Register a model file or folder as a new version of NAME."""
    _register(
        ctx, project=project, source=path, name=name, flavor=flavor, trust=trust,
        trust_type=trust_type, input_example=input_example, metric=metric, param=param,
        tag=tag, description=description, as_json=as_json,
    )  # fmt: skip


@models_app.command("import-mlflow")
def import_mlflow(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="An MLflow model folder (with MLmodel).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    trust: TrustOption = False,
    trust_type: TrustTypeOption = None,
    input_example: ExampleOption = None,
    metric: KeyValues = None,
    param: KeyValues = None,
    tag: KeyValues = None,
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Import a model folder saved by MLflow as a new version of NAME."""
    _register(
        ctx, project=project, source=directory, name=name, flavor="mlflow", trust=trust,
        trust_type=trust_type, input_example=input_example, metric=metric, param=param,
        tag=tag, description=description, as_json=as_json,
    )  # fmt: skip


@models_app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="List this model's versions.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include archived versions.")] = False,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """List registered models, or the versions of NAME."""
    registry = open_project(ctx, project).registry
    if name is None:
        models = registry.list_models()
        if as_json:
            print_json([m.to_dict() for m in models])
        elif not models:
            console.print("No registered models yet: 'shipyard models register' adds one.")
        else:
            console.print(models_table(models))
        return
    versions = registry.list_versions(name, include_archived=all_)
    if as_json:
        print_json([v.to_dict() for v in versions])
    else:
        console.print(versions_table(name, versions))


@models_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Show one version: metrics, signature, lineage, trust."""
    info = open_project(ctx, project).registry.get(ref)
    if as_json:
        print_json(info.to_dict())
    else:
        show_version(info)


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The version to promote (NAME:VERSION).")],
    to: Annotated[str, typer.Option("--to", help="Stage or alias: poc, prototype, production.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    force: Annotated[bool, typer.Option(help="Override a failing gate (needs --reason).")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Only evaluate the gate (as shipyard gate --no-record): exit 1 if it refuses.",
        ),
    ] = False,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Move a stage alias to a version, if the stage's gate passes."""
    registry = open_project(ctx, project).registry
    if dry_run:
        from shipyard.cli.gate import Format, render

        check = registry.gate_check(ref, to)
        if as_json:
            print_json(check.to_dict())
        else:
            console.print(render(check, Format.text), end="", soft_wrap=True, markup=False)
        raise typer.Exit(0 if check.passed else 1)
    try:
        event = registry.promote(ref, to, reason=reason, force=force)
    except AlreadyHoldsError as exc:  # a deploy run again: nothing to do, not a failure
        console.print(f"{exc.message}: nothing to do", soft_wrap=True, markup=False)
        return
    except GateFailedError:
        if as_json:
            print_json(registry.history(ref.split(":")[0].split("@")[0])[-1].to_dict())
        raise
    if as_json:
        print_json(event.to_dict())
        return
    verb = "forced" if event.forced else "promoted"
    console.print(f"{event.name}:{event.to_version} {verb} to [bold]{event.alias}[/bold]")
    gate_lines(event.gate)


@models_app.command("alias")
def alias(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION to point at (NAME with --remove).")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. champion.")],
    remove: Annotated[bool, typer.Option(help="Remove the alias instead.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    project: ProjectOption = None,
) -> None:
    """Point a free alias (champion, challenger…) at a version, or remove an alias."""
    registry = open_project(ctx, project).registry
    if remove:
        event = registry.remove_alias(ref.split(":")[0], alias_name, reason=reason)
        console.print(f"removed {event.alias} from {event.name}:{event.from_version}")
    else:
        event = registry.set_alias(ref, alias_name, reason=reason)
        console.print(f"{event.name}@{event.alias} → version {event.to_version}")


@models_app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    tags: Annotated[list[str], typer.Argument(help="KEY=VALUE pairs.")],
    project: ProjectOption = None,
) -> None:
    """Set tags on a version (e.g. business_value=approved, which a gate may require)."""
    info = open_project(ctx, project).registry.set_tags(ref, _pairs(tags, "tag"))
    console.print(f"{info.ref} tags: " + ", ".join(f"{k}={v}" for k, v in info.tags.items()))


@models_app.command("archive")
def archive(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    restore: Annotated[bool, typer.Option(help="Make an archived version active again.")] = False,
    reason: Annotated[str, typer.Option(help="Why (recorded in the history).")] = "",
    project: ProjectOption = None,
) -> None:
    """Archive a version (hidden from NAME and listings), or restore it."""
    registry = open_project(ctx, project).registry
    info: VersionInfo = registry.archive(ref, restore=restore, reason=reason)
    console.print(f"{info.ref} is {info.status}")


@models_app.command("delete")
def delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    project: ProjectOption = None,
) -> None:
    """Delete a version's record (refused while an alias points at it)."""
    registry = open_project(ctx, project).registry
    info = registry.get(ref)
    if not yes:
        typer.confirm(f"Delete {info.ref}? Its version number is never reused", abort=True)
    registry.delete_version(info.ref)
    console.print(f"deleted {info.ref}")


@models_app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    as_json: JsonOption = False,
    project: ProjectOption = None,
) -> None:
    """Every promotion decision for NAME: who, when, why, and what the gate said."""
    events = open_project(ctx, project).registry.history(name, alias_name)
    if as_json:
        print_json([e.to_dict() for e in events])
    else:
        console.print(history_table(name, events))
