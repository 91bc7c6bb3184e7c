"""The quickstart: one churn model carried from training to production, in well under a minute.

:func:`run_quickstart` creates a demo project, writes its stage gates, trains a
logistic-regression baseline and a gradient-boosted model on synthetic churn data,
registers both, walks them through the gates (one refusal included), serves the
production version and prints the decision history. Running it again on the same
folder registers new versions in the same project.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from threadpoolctl import threadpool_limits

from shipyard.core.exceptions import ConfigError, ConflictError, GateFailedError, SchemaError
from shipyard.core.settings import CONFIG_FILE, STATE_DIR, Settings
from shipyard.demo.churn import (
    FEATURES,
    TARGET,
    build_baseline,
    build_boosted,
    evaluate,
    make_churn,
    split,
)
from shipyard.project import DEFAULT_CONFIG, GITIGNORE, Project
from shipyard.registry import PromotionInfo, RuleResult, VersionInfo
from shipyard.render import gate_lines, history_table

#: The registered model's name.
MODEL = "churn"
#: First line of the gates the quickstart writes; it marks a folder as a quickstart project.
MARKER = "# Stage gates written by 'shipyard quickstart'"
GATES = f"""\
{MARKER}: a version must pass every rule to take the stage.
[gates.prototype]
rules = ["roc_auc >= 0.75"]

[gates.production]
rules = ["roc_auc >= 0.80", "roc_auc >= production.roc_auc - 0.01"]
require_tags = {{ business_value = "approved" }}
"""
_STORE_VARS = ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS")


def run_quickstart(
    directory: str | Path,
    console: Console | None = None,
    *,
    n_rows: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the churn walk-through in the project at ``directory`` and return what it did.

    A missing folder becomes a new project; an earlier quickstart project gets new
    versions. Any other shipyard project is refused with :class:`ConflictError` (the
    quickstart rewrites the gates of the project it uses).
    """
    started = time.perf_counter()
    out = console if console is not None else Console(highlight=False)
    root = Path(directory).expanduser().resolve()
    resumed, settings = _prepare(root, out)
    # On 5000 rows one thread beats OpenMP's start-up, and never fights other processes.
    with threadpool_limits(limits=1), Project(root, settings=settings) as project:
        registry = project.registry
        out.rule("1. Data")
        data = make_churn(n_rows, seed)
        train, test = split(data, seed)
        missing = {c: int(n) for c, n in data[FEATURES].isna().sum().items() if n}
        out.print(
            f"{len(data)} synthetic telecom customers ({len(train)} train / {len(test)} test), "
            f"{data[TARGET].mean():.1%} churned; missing values: "
            + ", ".join(f"{c} {n}" for c, n in missing.items())
        )

        out.rule("2. Train and register")
        versions: dict[str, VersionInfo] = {}
        for kind, model, story in (
            ("baseline", build_baseline(seed), "logistic regression baseline"),
            ("boosted", build_boosted(seed), "histogram gradient boosting"),
        ):
            model.fit(train[FEATURES], train[TARGET])
            estimator = model.steps[-1][1]
            info = registry.register(
                MODEL,
                model,
                input_example=train[FEATURES],
                metrics=evaluate(model, test),
                params=_params(estimator, len(train)),
                tags={"candidate": kind, "team": "retention", "data": "synthetic"},
                description=f"Churn {story} (shipyard quickstart)",
                trust=True,
                datasets={"train": train, "test": test},
            )
            versions[kind] = info
            out.print(
                f"registered [bold]{info.ref}[/bold] ({type(estimator).__name__}): {_m(info)}"
            )
            trusted = ", ".join(info.trusted_types) or "none"
            out.print(f"  trusted skops types (trust=True, review them): {trusted}")
        baseline, boosted = versions["baseline"], versions["boosted"]

        out.rule("3. Promote through the gates")
        _promote(out, registry.promote(baseline.ref, to="poc", reason="first baseline"))
        refused: list[dict[str, Any]] = []
        out.print(f"{baseline.ref} → production (no business approval yet):")
        try:
            registry.promote(baseline.ref, to="production", reason="ship the baseline?")
        except GateFailedError as exc:
            refused = exc.failures
            out.print("  [red]refused[/red] (recorded in the history); failed rules:")
            gate_lines((RuleResult(**f) for f in exc.failures), out, indent=4)
        else:  # only when someone loosened the gates by hand
            out.print("  [yellow]the production gate let the baseline through[/yellow]")
        for stage in ("poc", "prototype"):
            _promote(out, registry.promote(boosted.ref, to=stage, reason="beats the baseline"))
        registry.set_tags(boosted.ref, {"business_value": "approved"})
        out.print(f"tagged {boosted.ref} business_value=approved (the retention team signed off)")
        _promote(
            out, registry.promote(boosted.ref, to="production", reason="approved for retention")
        )

        out.rule("4. Serve churn@production")
        served = registry.load(f"{MODEL}@production")
        rows = pd.concat([test[test[TARGET] == 1].head(3), test[test[TARGET] == 0].head(3)])
        predicted = served.predict(rows[FEATURES])
        proba = served.predict_proba(rows[FEATURES])[:, 1]
        table = Table(title=f"Predictions of {MODEL}:{served.version} (production)")
        for column in ("customer", "contract", "tenure", "monthly", "churned", "predicted", "p"):
            table.add_column(column)
        shown = ("customer_id", "contract", "tenure_months", "monthly_charges", TARGET)
        for (_, row), label, p in zip(rows.iterrows(), predicted, proba, strict=True):
            table.add_row(*(str(row[c]) for c in shown), str(label), f"{p:.3f}")
        out.print(table)
        try:
            served.predict(rows[FEATURES].drop(columns=["contract"]))
        except SchemaError as exc:
            out.print(f"input is checked against the signature: [red]{escape(exc.message)}[/red]")

        out.rule("5. Versions and decisions")
        out.print(_versions_table(registry.list_versions(MODEL)))
        history = registry.history(MODEL)
        out.print(history_table(MODEL, history))
    elapsed = time.perf_counter() - started
    out.print(f"Done in {elapsed:.1f} s. Where to look:")
    for what, where in (
        ("the project", str(root)),
        ("models", f"shipyard models list --project {root}"),
        ("the production version", f"shipyard models show {MODEL}@production --project {root}"),
        ("every decision", f"shipyard models history {MODEL} --project {root}"),
    ):
        out.print(f"  {what:24} {escape(where)}", soft_wrap=True)  # commands stay copyable
    return {
        "project": str(root),
        "resumed": resumed,
        "model": MODEL,
        "versions": {kind: v.version for kind, v in versions.items()},
        "metrics": {kind: dict(v.metrics) for kind, v in versions.items()},
        "trusted_types": {kind: v.trusted_types for kind, v in versions.items()},
        "production": served.version,
        "refused": refused,
        "outcomes": [e.outcome for e in history],
        "predictions": [int(x) for x in predicted],
        "elapsed_seconds": round(elapsed, 3),
    }


def _prepare(root: Path, out: Console) -> tuple[bool, Settings]:
    """Create the project (or reuse an earlier quickstart one), write the gates, load settings.

    ``SHIPYARD_DATABASE_URL`` and ``SHIPYARD_ARTIFACTS`` are ignored: the demo must never
    move the aliases of a real ``churn`` model in a shared registry.
    """
    config = root / CONFIG_FILE
    resumed = config.exists()
    if resumed:
        if MARKER not in config.read_text(encoding="utf-8"):
            raise ConflictError(
                f"{root} is a shipyard project the quickstart did not create; the quickstart "
                "rewrites the gates of its project, so give it a new folder"
            )
        out.print(f"{escape(str(root))} holds an earlier quickstart project: adding versions")
    else:  # not Project.init: it opens whatever store the environment names
        (root / STATE_DIR).mkdir(parents=True, exist_ok=True)
        if not (root / ".gitignore").exists():
            (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        out.print(f"created a shipyard project in {escape(str(root))}")
    write_gates(config, None if resumed else DEFAULT_CONFIG.format(name=root.name))
    out.print(f"stage gates written to {config.name}:")
    out.print(GATES.split("\n", 1)[1].rstrip(), markup=False)
    ignored = [name for name in _STORE_VARS if os.environ.get(name)]
    if ignored:
        out.print(
            f"[yellow]ignoring {', '.join(ignored)}: the demo keeps its models in "
            f"{escape(str(root / STATE_DIR))} (unset them for the commands printed at the end)"
            "[/yellow]"
        )
    environ = {k: v for k, v in os.environ.items() if k not in _STORE_VARS}
    return resumed, Settings.load(root, environ)


def write_gates(config: Path, base: str | None = None) -> None:
    """Write ``base`` (default: ``config``'s text) to ``config`` with :data:`GATES` as its gates.

    Every ``[gates.*]`` table of ``base`` is replaced; the file is replaced atomically.
    """
    kept: list[str] = []
    in_gates = False
    for line in (config.read_text(encoding="utf-8") if base is None else base).splitlines():
        header = line.strip()
        if header.startswith("["):
            was_in_gates, in_gates = in_gates, header.startswith(("[gates.", "[gates]"))
            if in_gates and not was_in_gates:  # drop the comment just above the old gates
                while kept and kept[-1].lstrip().startswith("#"):
                    kept.pop()
                while kept and not kept[-1].strip():
                    kept.pop()
        if not in_gates:
            kept.append(line)
    text = "\n".join(kept).rstrip() + "\n\n" + GATES
    try:  # never write a file shipyard cannot read
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config} is not valid TOML ({exc}); fix it or remove it") from exc
    tmp = config.with_name(f".{config.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(config)


def _params(estimator: Any, train_rows: int) -> dict[str, Any]:
    simple = (str, int, float, bool, type(None))
    params = {k: v for k, v in estimator.get_params().items() if isinstance(v, simple)}
    return {"estimator": type(estimator).__name__, "train_rows": train_rows, **params}


def _m(info: VersionInfo, *names: str) -> str:
    keys = names or tuple(info.metrics)
    return ", ".join(f"{k}={info.metrics[k]:.4g}" for k in keys if k in info.metrics)


def _promote(out: Console, info: PromotionInfo) -> None:
    was = f" (was {info.name}:{info.from_version})" if info.from_version is not None else ""
    out.print(f"{info.name}:{info.to_version} → {info.alias}: [green]{info.outcome}[/green]{was}")
    if info.gate:
        gate_lines(info.gate, out, indent=4)
    else:
        out.print("    no gate for this stage")


def _versions_table(versions: Iterable[VersionInfo]) -> Table:
    table = Table(title=f"Versions of {MODEL}")
    for column in ("version", "estimator", "roc_auc", "f1", "log_loss", "aliases"):
        table.add_column(column)
    for v in versions:
        scores = (
            f"{v.metrics[k]:.4f}" if k in v.metrics else "" for k in ("roc_auc", "f1", "log_loss")
        )
        estimator = str(v.params.get("estimator", v.flavor))
        table.add_row(str(v.version), estimator, *scores, ", ".join(v.aliases))
    return table
