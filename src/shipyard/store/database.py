"""The metadata database: one engine per project, migrated to the newest schema on open.

SQLite (the embedded default) runs in WAL mode so a CLI process and a server process
can use it at once; every transaction starts with ``BEGIN IMMEDIATE`` so two writers
queue on the lock (``busy_timeout``) instead of failing half-way. PostgreSQL is used
as it is. Alembic owns the schema; concurrent first opens serialise on a lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.core.exceptions import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
#: The table where Alembic records the schema revision.
VERSION_TABLE = "alembic_version"
#: The newest revision this code knows (a test checks it against the migration scripts).
HEAD = "0010_console_indexes"
SQLITE_BUSY_TIMEOUT_MS = 30_000


# Alembic is imported only when the schema must change: every CLI call and every pipeline
# step process opens a database, and most find it current (one SELECT, no Alembic import).
def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this version of shipyard knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("shipyard was installed without its migrations")
    return head


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction never
        # fails with SQLITE_BUSY half-way; WAL readers are not blocked by it.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """A project's metadata database. Use :meth:`open` to get one migrated and ready."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(
                f"database URL {url!r} is not a SQLAlchemy URL; use e.g. "
                "sqlite:///path/shipyard.db or postgresql+psycopg://user@host/db"
            ) from exc
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        try:
            if parsed.get_backend_name() == "sqlite":
                self.engine = _sqlite_engine(parsed)
            else:
                self.engine = sa.create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database URL {url!r}: {exc}") from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Database:
        """Connect and bring the schema to the newest revision."""
        database = cls(url)
        try:
            if database.current_revision() != HEAD:
                database.upgrade()
        except OperationalError as exc:
            database.dispose()
            raise ConfigError(
                f"cannot open the metadata database at {database.url.render_as_string()}: "
                f"{exc.orig}; check that it is running and the URL is right"
            ) from exc
        return database

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.url.get_backend_name()

    def upsert(self, table: Any) -> Any:
        """The backend's own ``INSERT`` for ``table``, the one with ``ON CONFLICT`` clauses.

        The dialect modules are imported here, when a write needs one: the server and
        the listings never pay for them at start-up.
        """
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None when empty)."""
        with self.engine.connect() as connection:
            if not sa.inspect(connection).has_table(VERSION_TABLE):
                return None
            revisions = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))  # noqa: S608 - the table name is a constant of this module, no user input
            found = [str(r) for (r,) in revisions]
        return found[0] if len(found) == 1 else None

    def upgrade(self, revision: str = "head") -> str | None:
        """Migrate the schema (idempotent) and return the revision reached."""
        from alembic import command

        with self.engine.begin() as connection:
            command.upgrade(_alembic_config(connection), revision)
        return self.current_revision()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
