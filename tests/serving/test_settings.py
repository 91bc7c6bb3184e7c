"""Serve settings resolved once from [serving] and the caller's options, for CLI and notebooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import Settings
from shipyard.serving import ServeSettings, WorkerConfig, resolve_serve_settings


def _settings(tmp_path: Path, serving: str) -> Settings:
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "p"\n' + serving)
    return Settings.load(tmp_path, environ={})


def test_the_file_gives_the_defaults_and_options_win(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        "[serving]\nprediction_log = false\nauth = true\npoll_seconds = 7\n"
        '[serving.shadow.churn]\ntarget = "churn:2"\n',
    )
    resolved = resolve_serve_settings(settings, max_batch=8)
    assert (resolved.prediction_log, resolved.auth, resolved.max_batch) == (False, True, 8)
    assert resolved.routing.poll_seconds == 7
    assert set(resolved.routing.shadow) == {"churn"}
    given = resolve_serve_settings(
        settings, prediction_log=True, auth=False, poll_seconds=0, canary=["churn=churn:3:10"]
    )
    assert (given.prediction_log, given.auth, given.routing.poll_seconds) == (True, False, 0)
    assert set(given.routing.canary) == {"churn"}


def test_a_wrong_flag_type_names_the_setting(tmp_path: Path) -> None:
    settings = _settings(tmp_path, '[serving]\nauth = "yes"\n')
    with pytest.raises(ConfigError, match=r"\[serving\] auth must be true or false"):
        resolve_serve_settings(settings)


def test_the_log_cap_is_a_whole_number_from_one(tmp_path: Path) -> None:
    assert resolve_serve_settings(_settings(tmp_path, "")).prediction_log_max_rows == 1_000
    capped = _settings(tmp_path, "[serving]\nprediction_log_max_rows = 50\n")
    assert resolve_serve_settings(capped).prediction_log_max_rows == 50
    for bad in ("0", '"many"', "2.5"):
        wrong = _settings(tmp_path, f"[serving]\nprediction_log_max_rows = {bad}\n")
        with pytest.raises(ConfigError, match=r"prediction_log_max_rows must be a whole number"):
            resolve_serve_settings(wrong)


def test_workers_get_the_same_settings_through_json(tmp_path: Path) -> None:
    serve = ServeSettings(max_batch=16, auth=True, compile="onnx")
    config = WorkerConfig(project=str(tmp_path), refs=["churn@production"], serve=serve)
    again = WorkerConfig.model_validate_json(config.model_dump_json())
    assert again == config
    assert again.serve.batching.max_batch == 16
