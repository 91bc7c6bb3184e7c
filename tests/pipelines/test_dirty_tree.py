"""A production-bound standard pipeline and a git tree with uncommitted changes: warned
about by default, refused with ``dirty_tree = "refuse"``, allowed with ``"allow"``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from shipyard import ConfigError, Settings
from shipyard.core.exceptions import ConflictError
from shipyard.pipelines.plan import resolve_params
from shipyard.pipelines.standard import build_standard
from shipyard.pipelines.standard_steps import check_tree

TRAIN = {
    "kind": "standard",
    "source": "customers",
    "target": "churned",
    "model": "logistic_regression",
}


def settings(root: Path, **changes: Any) -> Settings:
    sources = {"customers": {"kind": "csv", "path": "data/customers.csv"}}
    return Settings.model_validate(
        {"root": root, "sources": sources, "pipelines": {"train": {**TRAIN, **changes}}}
    )


def git(root: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", *identity, *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("x = 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_tree_or_no_repository_passes_whatever_the_policy(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for policy in ("warn", "refuse", "allow"):
        check_tree(repo, policy, "train")
        check_tree(tmp_path_factory.mktemp("no-git"), policy, "train")


def test_uncommitted_changes_are_refused_or_warned_about(repo: Path) -> None:
    (repo / "train.py").write_text("x = 2\n")
    with pytest.raises(ConflictError, match=r"uncommitted changes.*commit \(or stash\)"):
        check_tree(repo, "refuse", "train")
    with pytest.warns(UserWarning, match="records dirty = true"):
        check_tree(repo, "warn", "train")
    check_tree(repo, "allow", "train")


def test_only_a_production_bound_pipeline_passes_its_policy_to_register(tmp_path: Path) -> None:
    def policy(**changes: Any) -> str:
        pipeline = build_standard(settings(tmp_path, **changes), "train")
        return str(resolve_params(pipeline, {})["register"]["dirty_tree"])

    assert policy(promote_to="production") == "warn"
    assert policy(promote_to="production", dirty_tree="refuse") == "refuse"
    assert policy(promote_to="prototype", dirty_tree="refuse") == "allow"
    with pytest.raises(ConfigError, match="dirty_tree"):
        policy(promote_to="production", dirty_tree="sometimes")
