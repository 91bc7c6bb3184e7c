"""The metadata database: migrated on open, on SQLite and PostgreSQL, and shareable by processes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from shipyard import ConfigError
from shipyard.core.clock import utcnow
from shipyard.store import Database, head_revision
from shipyard.store.database import HEAD
from shipyard.store.tables import Base, RegisteredModel


def test_open_migrates_an_empty_database_to_head(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        assert database.current_revision() == head_revision()
        tables = set(sa.inspect(database.engine).get_table_names())
        assert {"registered_models", "model_versions", "model_aliases", "promotions"} <= tables
    finally:
        database.dispose()


def test_migrations_match_the_table_definitions(database_url: str) -> None:
    database = Database.open(database_url)
    try:
        with database.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
    finally:
        database.dispose()


def test_reopening_and_upgrading_again_is_harmless(database_url: str) -> None:
    Database.open(database_url).dispose()
    database = Database.open(database_url)
    try:
        assert database.upgrade() == head_revision()
    finally:
        database.dispose()


def test_session_commits_or_rolls_back_as_a_whole(database_url: str) -> None:
    database = Database.open(database_url)
    try:

        def half_way() -> None:
            with database.session() as session:
                session.add(RegisteredModel(name="half", description="", last_version=0))
                session.flush()
                raise RuntimeError("killed half-way")

        with pytest.raises(RuntimeError):
            half_way()
        with database.session() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(RegisteredModel)) == 0
            session.add(RegisteredModel(name="whole", description="", last_version=0))
        with database.session() as session:
            row = session.scalar(sa.select(RegisteredModel))
            assert row is not None
            assert row.name == "whole"
            assert row.created_at.tzinfo is not None
            assert row.created_at <= utcnow()
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Database.open(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        Database("not a url")
    with pytest.raises(ConfigError, match="cannot open the metadata database"):
        Database.open("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_the_head_constant_matches_the_migration_scripts() -> None:
    # Database.open compares with HEAD to avoid importing Alembic when nothing changes.
    assert head_revision() == HEAD
