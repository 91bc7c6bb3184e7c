"""Rendering for people (rich tables, gate results) and tools (``--json``): CLI and demo."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from shipyard.registry import ModelInfo, PromotionInfo, RuleResult, VersionInfo

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_STATUS_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow", "pending": "yellow"}
_OUTCOME_STYLE = {
    "refused": "red",
    "promoted": "green",
    "forced": "yellow",
    "approved": "green",
    "rollback": "yellow",
    "archived": "dim",
    "restored": "cyan",
}


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _styled(text: str, style: str | None) -> str:
    return f"[{style}]{text}[/{style}]" if style else text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def models_table(models: Iterable[ModelInfo]) -> Table:
    """One row per registered model."""
    table = Table(title="Registered models")
    for column in ("name", "latest", "versions", "aliases", "updated"):
        table.add_column(column)
    for model in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in model.aliases.items())
        updated = model.updated_at.strftime("%Y-%m-%d %H:%M") if model.updated_at else ""
        table.add_row(
            model.name, _fmt(model.latest_version), str(model.version_count), aliases, updated
        )
    return table


def versions_table(name: str, versions: Iterable[VersionInfo]) -> Table:
    """One row per version of a model."""
    table = Table(title=f"Versions of {name}")
    for column in ("version", "flavor", "status", "aliases", "metrics", "created", "by"):
        table.add_column(column)
    for v in versions:
        metrics = ", ".join(f"{k}={_fmt(x)}" for k, x in v.metrics.items())
        table.add_row(
            str(v.version),
            v.flavor,
            v.status,
            ", ".join(v.aliases),
            metrics,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.created_by,
        )
    return table


def show_version(v: VersionInfo) -> None:
    """Everything about one version, for people."""
    console.print(f"[bold]{v.ref}[/bold]  flavor={v.flavor}  status={v.status}")
    if v.aliases:
        console.print(f"aliases: {', '.join(v.aliases)}")
    if v.description:
        console.print(f"description: {v.description}")
    console.print(f"registered {v.created_at:%Y-%m-%d %H:%M:%S} UTC by {v.created_by}")
    console.print(f"artifact sha256: {v.artifact_digest}")
    if v.trusted_types:
        console.print(f"trusted at registration: {', '.join(v.trusted_types)}")
    for title, values in (("metrics", v.metrics), ("params", v.params), ("tags", v.tags)):
        if values:
            console.print(f"{title}: " + ", ".join(f"{k}={_fmt(x)}" for k, x in values.items()))
    if "net_per_period" in v.metrics:
        m = v.metrics
        console.print(
            f"business value: EBITDA {m['net_per_period']:,.0f} per period "
            f"(interval {m.get('ebitda_low', 0):,.0f} … {m.get('ebitda_high', 0):,.0f}), "
            f"ROI {m.get('roi', 0):.2f}, payback {m.get('payback_periods', 0):.2f} periods"
        )
    git = v.lineage.get("git") or {}
    if git.get("commit"):
        dirty = " (dirty)" if git.get("dirty") else ""
        console.print(f"git: {git['commit'][:12]}{dirty} on {git.get('branch')}")
    for dataset, fingerprint in (v.lineage.get("datasets") or {}).items():
        console.print(f"dataset {dataset}: {fingerprint[:16]}…")
    if v.lineage.get("run_id"):
        console.print(f"run: {v.lineage['run_id']}")
    if v.signature is not None:
        table = Table(title="Signature (inputs)")
        for column in ("column", "dtype", "nullable", "seen"):
            table.add_column(column)
        for c in v.signature.inputs:
            if c.categories is not None:
                seen = ", ".join(map(str, c.categories[:6])) + (
                    " …" if len(c.categories) > 6 else ""
                )
            elif c.minimum is not None:
                seen = f"{_fmt(c.minimum)} … {_fmt(c.maximum)}"
            else:
                seen = ""
            table.add_row(c.name, c.dtype, "yes" if c.nullable else "no", seen)
        console.print(table)
        if v.signature.outputs is not None:
            out = v.signature.outputs
            classes = f", classes {list(out.classes)}" if out.classes is not None else ""
            console.print(f"output: {out.dtype} shape {list(out.shape)}{classes}")
    else:
        console.print("[yellow]no signature: input is not validated[/yellow]")


def gate_lines(results: Iterable[RuleResult], out: Console | None = None, indent: int = 2) -> None:
    """Each gate rule with its outcome, on ``out`` (default: stdout)."""
    out = out or console
    for r in results:
        style = _STATUS_STYLE.get(r.status, "")
        text = f"[{style}]{r.status:7}[/{style}] {escape(r.rule)}: {escape(r.detail)}"
        out.print(" " * indent + text)


def history_table(name: str, events: Iterable[PromotionInfo]) -> Table:
    """The decision history of a model."""
    table = Table(title=f"Decision history of {name}")
    for column in ("when", "alias", "from", "to", "outcome", "by", "reason", "gate"):
        table.add_column(column)
    for e in events:
        failed = sum(1 for r in e.gate if not r.passed)
        gate = f"{len(e.gate) - failed}/{len(e.gate)} passed" if e.gate else ""
        table.add_row(
            e.at.strftime("%m-%d %H:%M:%S"),
            e.alias,
            _fmt(e.from_version) if e.from_version is not None else "-",
            _fmt(e.to_version) if e.to_version is not None else "-",
            _styled(e.outcome, _OUTCOME_STYLE.get(e.outcome)),
            e.actor,
            e.reason,
            gate,
        )
    return table
