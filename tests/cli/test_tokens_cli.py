"""``shipyard tokens``: the secret is printed once, listed never, and revoked by name."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from shipyard.cli.app import app
from shipyard.registry.tokens import hash_token

runner = CliRunner()


def shipyard(root: Path, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {"SHIPYARD_DATABASE_URL": database_url, "SHIPYARD_USER": "alice"}
    result = runner.invoke(app, ["--project", str(root), *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_create_list_revoke(tmp_path: Path, database_url: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "shipyard.toml").write_text('[project]\nname = "t"\n', encoding="utf-8")

    code, out, err = shipyard(
        root, database_url, "tokens", "create", "ci", "--scope", "predict", "--scope", "read"
    )
    assert code == 0, err
    token = out.strip().splitlines()[-1]
    assert token.startswith("shp_")
    assert "shown once" in out

    code, out, err = shipyard(root, database_url, "tokens", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [(t["name"], t["scopes"], t["active"], t["created_by"]) for t in listed] == [
        ("ci", ["predict", "read"], True, "alice")
    ]
    assert token not in out
    assert hash_token(token) not in out
    code, table, _ = shipyard(root, database_url, "tokens", "list")
    assert code == 0
    assert "ci" in table
    assert token not in table

    code, out, err = shipyard(root, database_url, "tokens", "create", "ci", "--scope", "read")
    assert code == 1
    assert "active token called 'ci'" in err
    code, out, err = shipyard(root, database_url, "tokens", "create", "x", "--scope", "write")
    assert code == 1
    assert "unknown scope" in err

    code, out, err = shipyard(root, database_url, "tokens", "revoke", "ci")
    assert code == 0, err
    assert "revoked" in out
    code, out, _ = shipyard(root, database_url, "tokens", "list", "--json")
    assert [t["active"] for t in json.loads(out)] == [False]
    code, out, err = shipyard(root, database_url, "tokens", "revoke", "ci")
    assert code == 1
    assert "no active token" in err
