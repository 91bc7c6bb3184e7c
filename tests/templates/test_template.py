"""The project template: what create_project writes, and that the project it makes works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from shipyard import ConflictError, InvalidArgumentError, Project, Settings
from shipyard.datasets import parse_sources
from shipyard.pipelines import load_module_pipeline
from shipyard.pipelines.resolve import resolve_pipeline
from shipyard.pipelines.runner import Runner
from shipyard.pipelines.standard import parse_standard
from shipyard.registry import parse_gates
from shipyard.templates import create_project
from shipyard.value import ValueSettings

FILES = [
    ".gitignore",
    "README.md",
    "data/customers.csv",
    "notebooks/explore.ipynb",
    "pipelines/example.py",
    "pyproject.toml",
    "shipyard.toml",
    "tests/acceptance/test_model_quality.py",
    "tests/conftest.py",
    "tests/integration/test_model_predicts.py",
    "tests/unit/test_steps.py",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment without store overrides: the project keeps its own store."""
    for name in ("SHIPYARD_DATABASE_URL", "SHIPYARD_ARTIFACTS"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    made = tmp_path / "churn-project"
    create_project(made, "churn-project")
    return made


def pytest_in(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the project's own tests in a child process, as its user would."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_writes_every_file_and_returns_them(tmp_path: Path) -> None:
    root = tmp_path / "new"
    written = create_project(root, "Churn team's project")
    assert [p.relative_to(root).as_posix() for p in written] == FILES
    assert "# Churn team's project" in (root / "README.md").read_text()
    assert not list(tmp_path.glob(".new.*"))  # the staging folder was renamed away


def test_accepts_an_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert len(create_project(root, "empty")) == len(FILES)


def test_refuses_a_folder_with_files(tmp_path: Path) -> None:
    root = tmp_path / "busy"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(ConflictError, match="not empty; give 'shipyard init' a new or empty"):
        create_project(root, "busy")
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
    with pytest.raises(ConflictError, match="is a file"):
        create_project(root / "notes.txt", "busy")


def test_refuses_a_name_on_two_lines(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="one line"):
        create_project(tmp_path / "x", "two\nlines")


def test_a_failure_half_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, name: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("shipyard.templates._fill", broken)
    with pytest.raises(OSError, match="disk full"):
        create_project(tmp_path / "half", "half")
    assert list(tmp_path.iterdir()) == []


def test_the_notebook_is_valid_and_uses_the_project(root: Path) -> None:
    notebook = nbformat.read(root / "notebooks" / "explore.ipynb", as_version=4)
    nbformat.validate(notebook)
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    for call in ('Project(".")', 'datasets.read("raw/customers")', "list_models()",
                 'registry.load("churn@prototype")', "predict_proba"):  # fmt: skip
        assert call in code


def test_the_settings_parse_and_the_standard_road_validates(root: Path, clean_env: dict) -> None:
    settings = Settings.load(root, environ={})
    assert settings.project.name == "churn-project"
    assert list(parse_sources(settings.sources)) == ["customers"]
    config = parse_standard(settings, "train")
    assert (config.source, config.target, config.register_as) == ("customers", "churned", "churn")
    assert config.promote_to == "prototype"
    assert settings.value is not None
    assert ValueSettings.from_table(settings.value).kind == "classification"
    rules = parse_gates(settings.gates)
    assert [r.text for r in rules["production"]] == [
        "roc_auc >= 0.80", "roc_auc >= production.roc_auc - 0.01", "roi >= 1.5",
        "net_per_period >= production.net_per_period * 0.95",
    ]  # fmt: skip
    assert settings.gates["production"].require_tags == {"business_value": "approved"}
    assert settings.schedules == {"train": {"cron": "0 6 * * 1", "timezone": "Europe/Paris"}}
    assert settings.serving == {"models": ["churn@production"]}


def test_a_name_with_quotes_stays_valid_toml(tmp_path: Path) -> None:
    create_project(tmp_path / "q", 'the "quoted" \\ project')
    assert Settings.load(tmp_path / "q", environ={}).project.name == 'the "quoted" \\ project'


def test_the_data_is_the_churn_table(root: Path) -> None:
    data = pd.read_csv(root / "data" / "customers.csv")
    assert len(data) == 2000
    assert {"customer_id", "churned", "tenure_months", "contract"} <= set(data.columns)
    assert (root / "data" / "customers.csv").stat().st_size < 300_000


def test_the_example_pipeline_loads_and_its_steps_run(root: Path) -> None:
    pipeline = load_module_pipeline(root / "pipelines" / "example.py")
    assert pipeline.order() == ["add_features", "churn_by_segment", "report"]
    assert pipeline.external_inputs() == ["raw/customers"]
    customers = pd.read_csv(root / "data" / "customers.csv")
    features = pipeline.steps["add_features"](customers)
    segments = pipeline.steps["churn_by_segment"](features, segment="internet_service")
    assert set(segments["segment"]) == {"fiber optic", "DSL", "none"}
    assert segments["customers"].sum() == 2000
    text = pipeline.steps["report"](segments)
    assert text.startswith("Churn by segment\n")


def test_the_projects_unit_tests_pass(root: Path, clean_env: dict[str, str]) -> None:
    done = pytest_in(root, "tests/unit", env=clean_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


@pytest.mark.slow
def test_a_new_project_trains_promotes_and_passes_its_own_tests(
    root: Path, clean_env: dict[str, str]
) -> None:
    with Project(root) as project:
        runner = Runner(project.settings, project.database, project.artifacts, project.datasets)
        trained = runner.run(resolve_pipeline(project.settings, "train"))
        assert trained.status == "succeeded", trained.error
        example = runner.run(resolve_pipeline(project.settings, "example"))
        assert example.status == "succeeded", example.error
        assert project.registry.get("churn@prototype").version == 1
        assert project.datasets.get("processed/churn_by_segment").row_count == 3
    done = pytest_in(root, env=clean_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout  # unit, acceptance, integration (incl. over HTTP)
