"""Migration 0007 (run heartbeats): up and down on SQLite and PostgreSQL, views intact."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from shipyard.core.clock import utcnow
from shipyard.datasets.run_records import Runs
from shipyard.store import Database
from shipyard.store.database import HEAD, MIGRATIONS

NEW_COLUMNS = {"heartbeat_at", "host", "pid", "scheduled_for"}


def migrate(database: Database, revision: str, *, down: bool = False) -> None:
    with database.engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def columns(database: Database) -> set[str]:
    return {c["name"] for c in sa.inspect(database.engine).get_columns("runs")}


def runs_view(database: Database) -> list[tuple[str, str]]:
    with database.engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT run_id, status FROM shipyard_runs"))
        return [(str(a), str(b)) for a, b in rows]


def test_0007_goes_down_and_up_and_a_run_left_running_before_it_is_marked_failed(
    database_url: str,
) -> None:
    database = Database.open(database_url)
    try:
        assert columns(database) >= NEW_COLUMNS
        migrate(database, "0006_views", down=True)
        assert database.current_revision() == "0006_views"
        assert not NEW_COLUMNS & columns(database)
        # a run a killed process left behind before the upgrade: no heartbeat at all
        started = utcnow() - timedelta(hours=1)
        with database.engine.begin() as connection:
            connection.execute(
                sa.text(
                    'INSERT INTO runs (id, pipeline, status, "trigger", params, started_at, '
                    "error, created_by) VALUES ('old', 'p', 'running', 'manual', '{}', :at, '', "
                    "'ann')"
                ),
                {"at": started.replace(tzinfo=None)},
            )
        assert runs_view(database) == [("old", "running")]

        migrate(database, "head")
        assert database.current_revision() == HEAD
        assert columns(database) >= NEW_COLUMNS
        assert runs_view(database) == [("old", "running")]
        assert Runs(database).fail_stale(timedelta(minutes=1)) == ["old"]
        old = Runs(database).get("old")
        assert (old.status, old.heartbeat_at, old.host) == ("failed", None, "")
        assert "no heartbeat since" in old.error
        assert runs_view(database) == [("old", "failed")]
    finally:
        database.dispose()
