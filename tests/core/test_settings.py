"""Settings: shipyard.toml, SHIPYARD_* overrides, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard import ConfigError, ModelRef, ProjectNotFoundError, Settings
from shipyard.core.exceptions import InvalidReferenceError
from shipyard.core.settings import find_project_root


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path, environ={})
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / '.shipyard' / 'shipyard.db'}"
    assert settings.artifacts_url == str(tmp_path.resolve() / ".shipyard" / "artifacts")


def test_file_then_environment(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text(
        '[store]\ndatabase = "sqlite:///x.db"\nartifacts = "store"\n'
        '[gates.production]\nrules = ["auc >= 0.8"]\n'
    )
    settings = Settings.load(tmp_path, environ={"SHIPYARD_USER": "ann"})
    assert settings.database_url == "sqlite:///x.db"
    assert settings.artifacts_url == str(tmp_path.resolve() / "store")
    assert settings.gates["production"].rules == ["auc >= 0.8"]
    assert settings.actor == "ann"
    env = {"SHIPYARD_DATABASE_URL": "postgresql://db/x", "SHIPYARD_ARTIFACTS": "s3://b/p"}
    settings = Settings.load(tmp_path, environ=env)
    assert settings.database_url == "postgresql://db/x"
    assert settings.artifacts_url == "s3://b/p"


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "shipyard.toml"
    config.write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(tmp_path, environ={})
    config.write_text('[store]\ndatabse = "x"\n')
    with pytest.raises(ConfigError, match=r"store\.databse"):
        Settings.load(tmp_path, environ={})


def test_the_default_pipeline_is_kept_apart_from_the_pipelines(tmp_path: Path) -> None:
    config = tmp_path / "shipyard.toml"
    config.write_text('[pipelines]\ndefault = "train"\n\n[pipelines.train]\nkind = "standard"\n')
    settings = Settings.load(tmp_path, environ={})
    assert settings.default_pipeline == "train"
    assert settings.pipelines == {"train": {"kind": "standard"}}
    assert Settings.model_validate(settings.model_dump()) == settings

    config.write_text('[pipelines.default]\nkind = "standard"\n')  # a pipeline called default
    settings = Settings.load(tmp_path, environ={})
    assert settings.default_pipeline == ""
    assert settings.pipelines == {"default": {"kind": "standard"}}

    config.write_text("[pipelines]\ndefault = 3\n")
    with pytest.raises(
        ConfigError, match=r'pipelines: default must name a pipeline, such as default = "train"'
    ):
        Settings.load(tmp_path, environ={})


def test_the_project_is_found_upwards(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == tmp_path.resolve()
    with pytest.raises(ProjectNotFoundError, match="shipyard init"):
        find_project_root(Path("/"))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("churn", ModelRef("churn")),
        ("churn:3", ModelRef("churn", version=3)),
        ("churn@production", ModelRef("churn", alias="production")),
        ("fraud.v2-eu@champion", ModelRef("fraud.v2-eu", alias="champion")),
    ],
)
def test_references(text: str, parsed: ModelRef) -> None:
    assert ModelRef.parse(text) == parsed
    assert str(parsed) == text


@pytest.mark.parametrize("text", ["", "churn:", "churn:x", "churn@", "churn@1", "a b", "c@p@q"])
def test_bad_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        ModelRef.parse(text)
