"""The CLI starts at once: what a fresh ``shipyard`` process imports for help and listings.

Speed itself is for benchmarks (a test never asserts a time); this checks what makes it:
help pages load neither the metadata store's libraries nor the data and model ones, and
the listings load the store (SQLAlchemy, fsspec) but none of the libraries other commands
need. pydantic is not checked: Typer itself converts parameter values with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from shipyard import Project
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
#: What opening a project needs, which no help page does.
STORE = ("fsspec", "sqlalchemy")

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
        "SHIPYARD_TEST_WANTED": json.dumps([*HEAVY, *STORE]),
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
    assert sorted(m for m in (*HEAVY, *STORE) if m in modules) == []


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
    assert loaded == []


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
    assert loaded == sorted(STORE)


def test_help_texts_written_out_match_their_sources() -> None:
    scopes = ", ".join(SCOPES)
    assert f"What it allows (repeatable): {scopes}." == SCOPES_HELP
    profiles = ", ".join(PROFILE_NAMES)
    written = f"Profiles to write (repeatable; {profiles}; default: \\[deploy] profiles)."
    assert written == PROFILES_HELP
