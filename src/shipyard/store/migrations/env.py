"""Alembic environment: runs on the connection shipyard hands over in ``config.attributes``."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from shipyard.store.tables import Base

# A constant key for PostgreSQL's advisory lock, so two processes never migrate at once.
_MIGRATION_LOCK = 0x5E1F_A12D


def run_migrations_online() -> None:
    """Migrate through the connection given by shipyard (never from a URL in a file)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through 'shipyard db upgrade'")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
            )
        context.run_migrations()


run_migrations_online()
