"""The [deploy] table: defaults, flags over the file, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import Settings
from shipyard.packaging.settings import DEFAULT_BASE_IMAGE, load_deploy


def _settings(tmp_path: Path, toml: str) -> Settings:
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "Churn Demo"\n' + toml)
    return Settings.load(tmp_path, environ={})


SERVED = '[serving]\nmodels = ["churn@production"]\n'


def test_defaults_serve_the_serving_models(tmp_path: Path) -> None:
    deploy = load_deploy(_settings(tmp_path, SERVED))
    assert deploy.models == ["churn@production"]
    assert (deploy.replicas, deploy.profiles) == (2, ["core", "monitoring"])
    assert deploy.base_image == DEFAULT_BASE_IMAGE
    assert deploy.image_tag("Churn Demo") == "shipyard-churn-demo:latest"


def test_flags_win_over_the_file_and_all_means_every_profile(tmp_path: Path) -> None:
    settings = _settings(tmp_path, SERVED + "[deploy]\nreplicas = 3\nports = { api = 9100 }\n")
    deploy = load_deploy(settings, replicas=1, profiles=["all"], port_grafana=3300)
    assert deploy.replicas == 1
    assert deploy.profiles == ["core", "monitoring", "bi", "dev", "orchestration"]
    assert (deploy.ports.api, deploy.ports.grafana) == (9100, 3300)


def test_a_profile_without_core_gets_core(tmp_path: Path) -> None:
    assert load_deploy(_settings(tmp_path, SERVED), profiles=["bi"]).profiles == ["core", "bi"]


@pytest.mark.parametrize(
    ("toml", "flags", "message"),
    [
        ("", {"profiles": ["grafana"]}, r"unknown profile 'grafana'; choose from core, "),
        ("", {"replicas": 0}, r"replicas: Input should be greater than or equal to 1"),
        ("[deploy]\nports = { api = 3000 }\n", {}, r"ports.grafana and ports.api are both 3000"),
        ("[deploy]\nports = { api = 70000 }\n", {}, r"ports.api: Input should be less than"),
        ("[deploy]\nreplica = 2\n", {}, r"replica: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_setting(
    tmp_path: Path, toml: str, flags: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=r"\[deploy\] is invalid: .*" + message):
        load_deploy(_settings(tmp_path, SERVED + toml), **flags)


def test_a_project_with_no_served_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no served model.*\[serving\] models = "):
        load_deploy(_settings(tmp_path, ""))
