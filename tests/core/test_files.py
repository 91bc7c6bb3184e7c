"""Writing a file whole or not at all."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shipyard.core.files import write_text_atomic


def test_the_text_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "Jenkinsfile"
    path.write_text("old")
    write_text_atomic(path, "pipeline { }\n", mode=0o644)
    assert path.read_text() == "pipeline { }\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["Jenkinsfile"]


def test_without_a_mode_the_file_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    write_text_atomic(path, "x = 1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "half \udcff")  # a lone surrogate cannot be encoded
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
