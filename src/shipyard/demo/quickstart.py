"""The quickstart: a churn model carried along the road, from raw data to production.

:func:`run_quickstart` creates a project from the ``shipyard init`` template, runs its
standard training road (extract → validate → treat → train → evaluate → register →
gate) through the pipeline runner, shows the metrics next to the business value, walks
the version through the production gate (one refusal included), runs the road again to
show the cache, trains a challenger, serves ``churn@production``, prints the decision
history, scores the customer file as a batch job into the predictions store, and reads
those predictions back through the server's exposure API. Running it again on the same
folder continues the same project.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from threadpoolctl import threadpool_limits

from shipyard.core.exceptions import ConflictError, GateFailedError, SchemaError, ShipyardError
from shipyard.core.settings import CONFIG_FILE, Settings
from shipyard.datasets.run_records import RunInfo
from shipyard.demo.churn import TARGET, make_next_month
from shipyard.pipelines.resolve import resolve_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.project import Project
from shipyard.registry import PromotionInfo, RuleResult, VersionInfo
from shipyard.render import gate_lines, history_table
from shipyard.serving import create_app
from shipyard.templates import create_project

#: The registered model's name (``register_as`` in the template).
MODEL = "churn"
#: The template's standard pipeline.
PIPELINE = "train"
#: Appended to shipyard.toml: marks a folder as a quickstart project the demo may reuse.
MARKER = "# Created by 'shipyard quickstart'."
_STORE_VARS = ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS")
_SHOWN_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall")


def run_quickstart(directory: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Run the walk-through in the project at ``directory`` and return what it did.

    A missing or empty folder becomes a new project; an earlier quickstart project is
    continued. Any other folder is refused with :class:`ConflictError`.
    """
    started = time.perf_counter()
    out = console if console is not None else Console(highlight=False)
    root = Path(directory).expanduser().resolve()
    resumed = _prepare(root, out)
    # The demo never touches a shared registry named by the environment (see _prepare).
    environ = {k: v for k, v in os.environ.items() if k not in _STORE_VARS}
    settings = Settings.load(root, environ)
    # Small data: one BLAS/OpenMP thread is faster and never fights the step processes.
    with threadpool_limits(limits=1), Project(settings=settings) as project:
        registry = project.registry
        runner = Runner(settings, project.database, project.artifacts, project.datasets,
                        workers=2, console=out)  # fmt: skip
        pipeline = resolve_pipeline(settings, PIPELINE)

        out.rule("1. The standard road: shipyard run train")
        first = _run(runner, pipeline)
        version = registry.get(_registered(project, first))
        raw = project.datasets.get("raw/customers")
        out.print(f"raw/customers:{raw.version}: {raw.row_count} customers from data/customers.csv")
        _value_table(out, version, project.value.currency if project.value else "")

        out.rule("2. Through the production gate")
        refused = _try_production(out, registry, version.ref)
        registry.set_tags(version.ref, {"business_value": "approved"})
        out.print(f"tagged {version.ref} business_value=approved (finance signed off)")
        production = _try_production(out, registry, version.ref)

        out.rule("3. Run again: nothing changed")
        again = _run(runner, pipeline)
        reused = [s.step for s in again.steps if s.status == "cached"]
        out.print(f"reused {len(reused)} of {len(again.steps)} steps: {', '.join(reused)}")

        out.rule("4. A challenger: the same road, a logistic regression")
        challenger_run = _run(
            runner, pipeline, params={"train": {"model": "logistic_regression", "model_params": {}}}
        )
        challenger = registry.get(_registered(project, challenger_run))
        _value_table(out, challenger, project.value.currency if project.value else "")
        registry.set_tags(challenger.ref, {"business_value": "approved"})
        challenger_outcome = _try_production(out, registry, challenger.ref)

        out.rule(f"5. Serve {MODEL}@production")
        served = _serve(out, registry, project.datasets.read("raw/customers"))

        out.rule("6. Every decision")
        history = registry.history(MODEL)
        out.print(history_table(MODEL, history))

        out.rule(f"7. Batch scoring: shipyard predict {MODEL}@production")
        batch = _predict_batch(out, project, root)

        out.rule(f"8. Over HTTP: shipyard serve {MODEL}@production")
        answer = _serve_http(out, registry, project.datasets.read("raw/customers"), root)

        out.rule(f"9. Next month drifts: shipyard monitor {MODEL}@production")
        monitoring = _monitor(out, project, root)
    elapsed = time.perf_counter() - started
    out.print(f"Done in {elapsed:.1f} s. Where to look:")
    exe = _executable()
    for what, where in (
        ("the project", str(root)),
        ("its runs", f"{exe} runs list --project {root}"),
        ("its datasets", f"{exe} datasets list --project {root}"),
        ("the production version", f"{exe} models show {MODEL}@production --project {root}"),
        ("every decision", f"{exe} models history {MODEL} --project {root}"),
        ("batch predictions", f"{exe} datasets head {batch['dataset']} --project {root}"),
        ("batch jobs", f"{exe} predictions list --project {root}"),
        ("the monitoring report", monitoring["html"]),
        ("monitoring over time", f"{exe} monitor {MODEL} --history --project {root}"),
        ("the web console", f"{exe} ui --project {root}  # http://127.0.0.1:8000/ui/"),
    ):
        out.print(f"  {what:24} {escape(where)}", soft_wrap=True)  # commands stay copyable
    out.print("Hand it to IT (the image, then the architecture as one Compose file):")
    for command in (
        f"{exe} build --project {root}",
        f"{exe} compose --project {root}   # then: cd {root / 'deploy'} && docker compose up -d",
    ):
        out.print(f"  {escape(command)}", soft_wrap=True)
    return {
        "project": str(root),
        "resumed": resumed,
        "runs": [first.id, again.id, challenger_run.id],
        "version": version.version,
        "challenger": challenger.version,
        "metrics": dict(registry.get(version.ref).metrics),
        "refused": refused,
        "production": served,
        "promoted": production,
        "challenger_outcome": challenger_outcome,
        "reused": reused,
        "outcomes": [e.outcome for e in history],
        "batch": batch,
        "http_answer": answer["predict"],
        "exposed": answer["exposed"],
        "monitoring": monitoring,
        "elapsed_seconds": round(elapsed, 3),
    }


def _executable() -> str:
    """``shipyard`` when it is on PATH, else the path of the one next to this Python."""
    beside = Path(sys.executable).with_name("shipyard")
    on_path = shutil.which("shipyard")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "shipyard"
    return str(beside) if beside.exists() else "shipyard"


def _prepare(root: Path, out: Console) -> bool:
    """Create the project from the template, or accept an earlier quickstart project.

    ``SHIPYARD_DATABASE_URL`` and ``SHIPYARD_ARTIFACTS`` are ignored by the demo: it must
    never move the aliases of a real ``churn`` model in a shared registry.
    """
    config = root / CONFIG_FILE
    if config.exists():
        if MARKER not in config.read_text(encoding="utf-8"):
            raise ConflictError(
                f"{root} is a shipyard project the quickstart did not create; the quickstart "
                "promotes models in its project, so give it a new folder"
            )
        out.print(f"continuing the quickstart project in {escape(str(root))}")
        resumed = True
    else:
        create_project(root, root.name)
        tmp = config.with_name(f".{config.name}.tmp")
        tmp.write_text(config.read_text(encoding="utf-8") + f"\n{MARKER}\n", encoding="utf-8")
        tmp.replace(config)
        out.print(f"created a project from the template in {escape(str(root))} ('shipyard init')")
        resumed = False
    ignored = [name for name in _STORE_VARS if os.environ.get(name)]
    if ignored:
        out.print(
            f"[yellow]ignoring {', '.join(ignored)}: the demo keeps its models in "
            f"{escape(str(root / '.shipyard'))}[/yellow]"
        )
    return resumed


def _run(runner: Runner, pipeline: Any, params: dict[str, Any] | None = None) -> RunInfo:
    info = runner.run(pipeline, params=params)
    if info.status != "succeeded":
        raise ShipyardError(f"the demo's {pipeline.name} run failed: {info.error}")
    return info


def _predict_batch(out: Console, project: Project, root: Path) -> dict[str, Any]:
    """Score data/customers.csv with production as a batch job (predictions zone)."""
    source = root / "data" / "customers.csv"
    result = project.predict(
        f"{MODEL}@production", str(source), keys=("customer_id",), chunk_rows=500
    )
    job = result.job
    out.print(
        f"scored {job.rows:,} customers from data/customers.csv with {job.model}:{job.version} "
        f"in {job.chunks} chunks → {job.dataset} (job {job.id})"
    )
    head = project.datasets.head(str(job.dataset), 3)
    table = Table(title=f"{job.dataset} (first rows)")
    for column in head.columns:
        table.add_column(str(column))
    for row in head.itertuples(index=False):
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    out.print(table)
    cmd = f"{_executable()} predict {MODEL}@production --input {source} --key customer_id"
    out.print(f"  the same from a shell: {cmd} --project {root}", soft_wrap=True, markup=False)
    return {"job": job.id, "rows": job.rows, "dataset": job.dataset}


def _monitor(out: Console, project: Project, root: Path) -> dict[str, Any]:
    """Monitor production on a drifted next month (with its outcomes) against its reference."""
    data = root / "data" / "next_month.csv"
    if not data.exists():
        make_next_month().to_csv(data, index=False)
    html = root / "reports" / "monitoring.html"
    html.parent.mkdir(exist_ok=True)
    outcome = project.monitor(
        f"{MODEL}@production", current=str(data), target=TARGET, key="customer_id", report=html
    )
    report = outcome.report
    drifted = [c for c in report["columns"] if c["drifted"]]
    verdict = "dataset drift" if report["dataset_drift"] else "no dataset drift"
    out.print(
        f"{verdict}: {len(drifted)} of {len(report['columns'])} input columns drifted "
        f"(share {report['drift_share']:.0%}, threshold {report['share_threshold']:.0%}); "
        f"reference: {report['reference']}"
    )
    table = Table(title="drifted columns")
    for column in ("column", "method", "score", "threshold"):
        table.add_column(column)
    for entry in sorted(drifted, key=lambda c: -c["score"]):
        table.add_row(entry["column"], entry["method"], f"{entry['score']:.3f}",
                      f"{entry['threshold']:.2f}")  # fmt: skip
    out.print(table)
    outputs = report["prediction_drift"]
    if outputs:
        out.print(f"prediction drift: {'yes' if outputs['dataset_drift'] else 'no'} "
                  f"({outputs['drift_share']:.0%} of output columns)")  # fmt: skip
    performance = report["performance"] or {}
    comparison = performance.get("comparison", {})
    for metric in ("roc_auc", "f1"):
        if metric in comparison:
            c = comparison[metric]
            out.print(f"{metric}: {c['current']:.3f} on next month's {performance['rows']:,} "
                      f"labelled customers vs {c['baseline']:.3f} at registration")  # fmt: skip
    out.print(f"HTML report: {html}", soft_wrap=True, markup=False)
    cmd = (f"{_executable()} monitor {MODEL}@production --current {data} --target {TARGET} "
           f"--report {html}")  # fmt: skip
    out.print(f"  the same from a shell: {cmd} --project {root}", soft_wrap=True, markup=False)
    return {
        "dataset_drift": report["dataset_drift"],
        "drift_share": report["drift_share"],
        "drifted": [c["column"] for c in drifted],
        "prediction_drift": bool(outputs and outputs["dataset_drift"]),
        "performance": performance.get("metrics", {}),
        "html": str(html),
        "result_id": outcome.result_id,
    }


def _serve_http(out: Console, registry: Any, customers: pd.DataFrame, root: Path) -> dict[str, Any]:
    """Serve production on a loopback port for one real request, then show how to keep it up."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    app = create_app(registry, [f"{MODEL}@production"])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="quickstart-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ShipyardError("the demo's model server did not start")
            time.sleep(0.05)
        rows = customers.drop(columns=["customer_id", "churned"]).head(2)
        body = rows.to_json(orient="records")
        url = f"http://127.0.0.1:{port}/v1/models/{MODEL}/predict"
        request = urllib.request.Request(
            url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the demo server on loopback
            answer: dict[str, Any] = json.loads(response.read())
        exposed_url = f"http://127.0.0.1:{port}/v1/predictions?model={MODEL}&source=batch&limit=3"
        with urllib.request.urlopen(exposed_url, timeout=30) as response:
            exposed: dict[str, Any] = json.loads(response.read())
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    out.print(f"POST {url} (2 customers) answered:", soft_wrap=True, markup=False)
    out.print(json.dumps(answer), soft_wrap=True, markup=False)
    out.print("Try it yourself (MLflow clients: POST /invocations; KServe/Triton clients: /v2):")
    out.print(f"  {_executable()} serve {MODEL}@production --project {root}", soft_wrap=True,
              markup=False)  # fmt: skip
    curl = (
        f"curl -s -X POST http://127.0.0.1:8000/v1/models/{MODEL}/predict "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    out.print(f"  {curl}", soft_wrap=True, markup=False)
    out.print(f"GET {exposed_url} (the batch predictions, for other applications):",
              soft_wrap=True, markup=False)  # fmt: skip
    for row in exposed["predictions"]:
        out.print(f"  {json.dumps(row)}", soft_wrap=True, markup=False)
    out.print(
        "  more pages: add &cursor=<next_cursor>; &format=csv|parquet|arrow for other tools; "
        f"GET /v1/datasets/{MODEL}/versions/N/rows streams a whole dataset",
        soft_wrap=True,
        markup=False,
    )
    return {"predict": answer, "exposed": exposed}


def _registered(project: Project, run: RunInfo) -> str:
    """The version the run's ``register`` step registered (or reused from its cache)."""
    [output] = run.step("register").outputs.values()
    # The object was written by this project's own pipeline: loading it is trusted.
    ref: str = cloudpickle.loads(project.artifacts.get_bytes(output["digest"]))
    return ref


def _value_table(out: Console, version: VersionInfo, currency: str) -> None:
    m = version.metrics
    table = Table(title=f"{version.ref} ({version.params.get('estimator', version.flavor)})")
    table.add_column("model metric")
    table.add_column("value", justify="right")
    table.add_column("business value", style="bold")
    table.add_column(f"{currency}", justify="right")
    value_rows = [
        ("EBITDA per month", f"{m.get('net_per_period', 0):,.0f}"),
        ("90% interval", f"{m.get('ebitda_low', 0):,.0f} … {m.get('ebitda_high', 0):,.0f}"),
        ("ROI over 12 months", f"{m.get('roi', 0):.1f} x"),
        ("payback (months)", f"{m.get('payback_periods', 0):.1f}"),
        ("uplift vs no model", f"{m.get('uplift_per_period', 0):,.0f}"),
    ]
    for name, (label, amount) in zip(_SHOWN_METRICS, value_rows, strict=True):
        table.add_row(name, f"{m.get(name, float('nan')):.4f}", label, amount)
    out.print(table)


def _try_production(out: Console, registry: Any, ref: str) -> str:
    out.print(f"{ref} → production:")
    try:
        event: PromotionInfo = registry.promote(ref, to="production", reason="quickstart")
    except GateFailedError as exc:
        out.print("  [red]refused[/red] (recorded in the history):")
        gate_lines((RuleResult(**f) for f in exc.failures), out, indent=4)
        return "refused"
    except ConflictError as exc:  # already in production from an earlier quickstart run
        out.print(f"  {escape(exc.message)}")
        return "unchanged"
    out.print(f"  [green]{event.outcome}[/green]")
    gate_lines(event.gate, out, indent=4)
    return event.outcome


def _serve(out: Console, registry: Any, customers: pd.DataFrame) -> int:
    served = registry.load(f"{MODEL}@production")
    if served.signature is None:  # pragma: no cover - the standard road always records one
        raise ShipyardError(f"{MODEL}@production has no signature to select its columns")
    rows = customers.head(6)
    features = rows[served.signature.columns]
    predicted = served.predict(features)
    proba = served.predict_proba(features)[:, 1]
    table = Table(title=f"Predictions of {MODEL}:{served.version} (production)")
    for column in ("customer", "contract", "tenure", "churned", "predicted", "P(churn)"):
        table.add_column(column)
    for (_, row), label, p in zip(rows.iterrows(), predicted, proba, strict=True):
        shown = (row["customer_id"], row["contract"], row["tenure_months"], row["churned"], label)
        table.add_row(*(str(v) for v in shown), f"{p:.3f}")
    out.print(table)
    try:
        served.predict(features.drop(columns=["contract"]))
    except SchemaError as exc:
        out.print(f"input is checked against the signature: [red]{escape(exc.message)}[/red]")
    return int(served.version)
