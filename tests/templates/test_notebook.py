"""The template notebook, executed top to bottom by a real IPython kernel, as JupyterLab runs it.

The kernel runs on this test's own Python (a kernel spec written to a temporary folder), so the
test depends on no user-wide Jupyter install; it starts in the project's ``notebooks/`` folder,
as JupyterLab starts a notebook's kernel, after the project's ``train`` pipeline has run (the
notebook says to run it first).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from shipyard import Project
from shipyard.pipelines.resolve import resolve_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.templates import create_project

#: A name no user-wide kernel spec is likely to carry.
KERNEL = "shipyard-test-python"


@pytest.fixture
def trained_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A new template project whose ``train`` pipeline has run, on its own store."""
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)  # the kernel inherits this environment
    root = tmp_path / "churn-project"
    create_project(root, "churn-project")
    with Project(root) as project:
        runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
        run = runner.run(resolve_pipeline(project.settings, "train"))
        assert run.status == "succeeded", run.error
    return root


@pytest.fixture
def kernel_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KernelManager]:
    """A kernel manager for an ipykernel on ``sys.executable``, from a private kernel spec.

    nbclient leaves a kernel it did not start running: it is shut down here, even on failure.
    """
    jupyter = tmp_path / "jupyter"
    # Connection files, IPython's profile and history stay in the test's folder.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(jupyter / "data"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(jupyter / "ipython"))
    spec = jupyter / "kernels" / KERNEL
    spec.mkdir(parents=True)
    kernel = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (shipyard tests)",
        "language": "python",
    }
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(jupyter / "kernels")], ensure_native_kernel=False)
    manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    try:
        yield manager
    finally:
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)


def text_of(cell: Any) -> str:
    """Everything a code cell showed as plain text: its streams and its results."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom_on_a_trained_project(
    trained_project: Path, kernel_manager: KernelManager
) -> None:
    notebooks = trained_project / "notebooks"
    notebook = nbformat.read(notebooks / "explore.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(notebooks)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails

    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        kinds = [output.output_type for output in cell.outputs]
        assert "error" not in kinds, cell.source
        # A warning printed by the template (deprecation, sklearn, pandas) is a bug in it.
        assert not [o for o in cell.outputs if o.get("name") == "stderr"], text_of(cell)
    # Each code cell by its last line (the expression whose value the notebook shows).
    shown = {cell.source.splitlines()[-1]: text_of(cell) for cell in cells}

    assert shown["project"] == f"Project({str(trained_project)!r})"  # found from notebooks/
    head = shown["customers.head()"]
    assert "customer_id" in head
    assert "churned" in head
    by_contract = shown['customers.groupby("contract")["churned"].agg(["size", "mean"])']
    assert all(c in by_contract for c in ("month-to-month", "one-year", "two-year"))
    datasets = shown["[(d.ref, d.row_count) for d in project.datasets.list()]"]
    assert "('raw/customers:1', 2000)" in datasets
    models = shown[
        "[(m.name, m.latest_version, m.aliases) for m in project.registry.list_models()]"
    ]
    assert models == "[('churn', 1, {'prototype': 1})]"
    version = shown["version.ref, version.metrics"]
    assert version.startswith("('churn:1',")
    assert "'roc_auc': 0." in version

    # The notebook's ten probabilities are the registered prototype's.
    scored = shown["rows.assign(churn_probability=model.predict_proba(rows)[:, 1])"]
    assert "churn_probability" in scored
    assert "customer_id" not in scored
    with Project(trained_project) as project:
        customers = project.datasets.read("raw/customers")
        rows = customers.drop(columns=["customer_id", "churned"]).head(10)
        expected = project.registry.load("churn@prototype").predict_proba(rows)[:, 1]
    for probability in expected:
        assert f"{probability:.6f}" in scored
    table = next(o for o in cells[-2].outputs if o.output_type == "execute_result")
    assert table.data["text/html"].count("<tr") == 1 + 10  # JupyterLab shows a table
