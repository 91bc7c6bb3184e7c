"""A shipyard.toml that is not UTF-8: one line saying where, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from shipyard import ConfigError, Settings
from shipyard.cli.app import app

LATIN_1 = '[project]\nname = "caf\xe9"\n'.encode("latin-1")


def test_a_non_utf8_settings_file_is_a_config_error_naming_the_byte(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_bytes(LATIN_1)
    message = r"shipyard.toml is not UTF-8 text \(byte 0xe9 at line 2, column 12\); save it as"
    with pytest.raises(ConfigError, match=message):
        Settings.load(tmp_path, environ={})


def test_utf8_with_a_byte_order_mark_or_accents_still_loads(tmp_path: Path) -> None:
    (tmp_path / "shipyard.toml").write_text('[project]\nname = "café"\n', encoding="utf-8")
    assert Settings.load(tmp_path, environ={}).project.name == "café"


def test_the_cli_prints_one_line_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHIPYARD_DEBUG", raising=False)
    (tmp_path / "shipyard.toml").write_bytes(LATIN_1)
    result = CliRunner().invoke(app, ["runs", "list", "--project", str(tmp_path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "is not UTF-8 text (byte 0xe9 at line 2" in lines[0]
    assert "Traceback" not in result.output
