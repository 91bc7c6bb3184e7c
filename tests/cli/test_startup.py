"""The CLI starts at once: what a fresh ``shipyard`` process imports for help and listings.

Speed itself is for benchmarks (a test never asserts a time); this checks what makes it:
help pages load neither the metadata store's libraries nor the data and model ones, and
the listings load the store (SQLAlchemy, fsspec) but none of the libraries other commands
need. pydantic is not checked: Typer itself converts parameter values with it.
"""

from __future__ import annotations

import ast
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

import shipyard.serving.warmup
from shipyard import Project
from shipyard.cli.app import app
from shipyard.cli.package import PROFILES_HELP
from shipyard.cli.tokens import SCOPES_HELP
from shipyard.packaging.settings import PROFILE_NAMES
from shipyard.registry.tokens import SCOPES

#: Only the commands that use them may import these (models, data, the server, migrations).
HEAVY = (
    "alembic",
    "cloudpickle",
    "fastapi",
    "jinja2",
    "matplotlib",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "skops",
    "sklearn",
    "starlette",
    "uvicorn",
)
#: What opening a project needs, which no help page does (fsspec: only to read a blob).
STORE = ("sqlalchemy",)
#: Imported only by the command that reads blobs, and by no listing.
BLOBS = ("fsspec",)
#: The command modules: ``shipyard X`` imports only X's (``--help`` imports them all).
COMMAND_MODULES = (
    "shipyard.cli.datasets",
    "shipyard.cli.feedback",
    "shipyard.cli.models",
    "shipyard.cli.monitor",
    "shipyard.cli.orchestrate",
    "shipyard.cli.package",
    "shipyard.cli.predict",
    "shipyard.cli.runs",
    "shipyard.cli.serve",
    "shipyard.cli.tokens",
    "shipyard.cli.ui",
)

# Runs ``shipyard ARGS`` as the console script does, then writes the loaded HEAVY and STORE
# modules as JSON to the file named by SHIPYARD_TEST_MODULES.
PROBE = """
import json, os, sys
from shipyard.cli.app import main
sys.argv = ["shipyard", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
wanted = json.loads(os.environ["SHIPYARD_TEST_WANTED"])
with open(os.environ["SHIPYARD_TEST_MODULES"], "w") as out:
    json.dump({"code": code, "loaded": sorted(m for m in wanted if m in sys.modules)}, out)
"""


def loaded_by(args: list[str], cwd: Path, tmp_path: Path) -> tuple[list[str], str]:
    """The HEAVY and STORE modules a fresh process running ``shipyard ARGS`` in ``cwd``
    imported, and what it printed."""
    report = tmp_path / "modules.json"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS")
    }
    env |= {
        "SHIPYARD_TEST_MODULES": str(report),
        "SHIPYARD_TEST_WANTED": json.dumps([*HEAVY, *STORE, *BLOBS, *COMMAND_MODULES]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["code"] in (0, None), done.stdout + done.stderr
    return result["loaded"], done.stdout


@pytest.fixture
def folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[Pipeline, pd.DataFrame, np.ndarray],
) -> Path:
    """A project with a registered model and a finished pipeline run, so listings show rows."""
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "proj"
    model, frame, _ = trained
    with Project.init(root, name="startup") as project:
        project.registry.register("churn", model, input_example=frame, trust=True)
        project.runs.create(
            run_id="20240101T000000-000000",
            pipeline="train",
            steps=["fit"],
            params={},
            trigger="manual",
            actor="tester",
            log_root=root / ".shipyard" / "runs",
        )
        project.runs.finish("20240101T000000-000000", "succeeded")
    return root


def test_importing_the_cli_loads_neither_models_nor_the_store(tmp_path: Path) -> None:
    code = "import json, sys, shipyard.cli.app; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    modules = set(json.loads(done.stdout))
    assert sorted(m for m in (*HEAVY, *STORE, *BLOBS, *COMMAND_MODULES) if m in modules) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["models", "--help"],
        ["run", "--help"],
        ["serve", "--help"],
        ["predict", "--help"],
    ],
)
def test_help_loads_neither_models_nor_the_store(args: list[str], tmp_path: Path) -> None:
    loaded, out = loaded_by(args, tmp_path, tmp_path)
    assert "Usage: shipyard" in out
    assert [m for m in loaded if m not in COMMAND_MODULES] == []
    if args != ["--help"]:  # the top page lists every command; a command's, its own only
        assert len([m for m in loaded if m in COMMAND_MODULES]) == 1


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["models", "list"], "churn"),
        (["models", "list", "churn", "--json"], '"flavor": "sklearn"'),
        (["runs", "list"], "20240101T000000-000000"),
        (["runs", "show", "latest"], "status=succeeded"),
        (["datasets", "list"], "No datasets yet"),
        (["predictions", "list"], "No batch jobs yet"),
        (["tokens", "list"], "API tokens"),
    ],
)
def test_listings_load_the_store_only(
    args: list[str], shown: str, folder: Path, tmp_path: Path
) -> None:
    loaded, out = loaded_by(args, folder, tmp_path)
    assert shown in out
    module = "shipyard.cli.predict" if args[0] == "predictions" else f"shipyard.cli.{args[0]}"
    assert loaded == sorted([*STORE, module])


def test_help_texts_written_out_match_their_sources() -> None:
    scopes = ", ".join(SCOPES)
    assert f"What it allows (repeatable): {scopes}." == SCOPES_HELP
    profiles = ", ".join(PROFILE_NAMES)
    written = f"Profiles to write (repeatable; {profiles}; default: \\[deploy] profiles)."
    assert written == PROFILES_HELP


def imported_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter has imported once it ran ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_opening_a_project_makes_only_the_stores_used(folder: Path) -> None:
    opens = f"from shipyard import Project\nproject = Project({str(folder)!r})\n"
    others = {
        "fsspec",
        "orjson",
        "shipyard.datasets.predictions",
        "shipyard.datasets.run_records",
        "shipyard.datasets.store",
        "shipyard.registry.tokens",
    }
    listed = imported_after(opens + "project.registry.list_models()", folder)
    assert sorted(others & listed) == []
    runs = imported_after(opens + "project.runs.list()", folder)
    assert sorted(others & runs) == ["shipyard.datasets.run_records"]


def test_the_server_start_needs_no_statistics_for_warm_up_rows(tmp_path: Path) -> None:
    # scipy.stats alone takes a second to import; the warm-up rows and the monitoring
    # results' store only take the statistics' values, they never compute them.
    modules = imported_after("import shipyard.datasets.monitor_results", tmp_path)
    assert sorted(m for m in ("scipy", "shipyard.statistics") if m in modules) == []
    # shipyard.serving's package imports the whole server: read warmup.py's own imports
    warmup = ast.parse(Path(shipyard.serving.warmup.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module or ""
        for node in warmup.body  # module level, outside ``if TYPE_CHECKING:``
        if isinstance(node, ast.ImportFrom)
    } | {alias.name for node in warmup.body if isinstance(node, ast.Import) for alias in node.names}
    assert sorted(m for m in imported if m.startswith(("scipy", "shipyard.statistics"))) == []


def test_commands_leave_the_garbage_collector_on(folder: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--project", str(folder)])
    assert listed.exit_code == 0, listed.output
    assert gc.isenabled()
    refused = runner.invoke(app, ["serve", "nosuch@production", "--project", str(folder)])
    assert refused.exit_code == 1, refused.output
    assert gc.isenabled()
