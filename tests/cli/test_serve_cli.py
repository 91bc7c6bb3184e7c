"""``shipyard serve``: where the models to serve come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.cli.serve import configured_refs
from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import Settings


def test_models_listed_in_shipyard_toml(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text(
        '[project]\nname = "x"\n\n[serving]\nmodels = ["churn@production", "fraud:3"]\n',
        encoding="utf-8",
    )
    assert configured_refs(Settings.load(tmp_path, environ={})) == ["churn@production", "fraud:3"]


def test_no_serving_table_means_no_models(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert configured_refs(Settings.load(tmp_path, environ={})) == []


def test_models_must_be_a_list_of_references(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text('[serving]\nmodels = "churn"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[serving\] models must be a list"):
        configured_refs(Settings.load(tmp_path, environ={}))
