"""API tokens: hashed storage, scopes, revocation and look-up (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shipyard.core.exceptions import ConflictError, InvalidArgumentError, NotFoundError
from shipyard.registry.tokens import TokenStore, hash_token
from shipyard.store import Database
from shipyard.store.tables import ApiToken


def test_tokens_are_stored_hashed_and_revoked_by_name(database_url: str) -> None:
    database = Database.open(database_url)
    tokens = TokenStore(database)
    try:
        secret, info = tokens.create("ci", ["read", "predict", "read"], "tester")
        assert secret.startswith("shp_")
        assert len(secret) > 40
        assert info.scopes == ("predict", "read")
        with database.session() as session:
            row = session.scalars(sa.select(ApiToken)).one()
            assert row.token_hash == hash_token(secret)
            assert secret not in repr(row.__dict__)
            assert row.created_by == "tester"
        with pytest.raises(ConflictError, match="active token called 'ci'"):
            tokens.create("ci", ["read"], "tester")
        with pytest.raises(InvalidArgumentError, match="unknown scope"):
            tokens.create("x", ["write"], "tester")
        with pytest.raises(InvalidArgumentError, match="at least one scope"):
            tokens.create("x", [], "tester")
        assert tokens.revoke("ci").revoked_at is not None
        with pytest.raises(NotFoundError, match="no active token"):
            tokens.revoke("ci")
        again, _ = tokens.create("ci", ["admin"], "tester")  # the name is free again
        assert again != secret
        listed = tokens.list()
        assert [(t.name, t.active) for t in listed] == [("ci", False), ("ci", True)]
        assert [t.name for t in tokens.list(include_revoked=False)] == ["ci"]
    finally:
        database.dispose()


def test_lookup_and_active_see_only_active_tokens(database_url: str) -> None:
    database = Database.open(database_url)
    tokens = TokenStore(database)
    try:
        old, _ = tokens.create("old", ["read"], "tester")
        new, _ = tokens.create("new", ["predict", "admin"], "tester")
        tokens.revoke("old")
        assert tokens.lookup(hash_token(old)) is None
        found = tokens.lookup(hash_token(new))
        assert found is not None
        assert (found.name, found.scopes) == ("new", ("predict", "admin"))
        assert tokens.lookup(hash_token("shp_wrong")) is None
        active = tokens.active()
        assert list(active) == [hash_token(new)]
        assert active[hash_token(new)].scopes == frozenset({"predict", "admin"})
        assert tokens.list()[1].last_used_at is None
        tokens.active(used=[active[hash_token(new)].id])
        assert tokens.list()[1].last_used_at is not None
    finally:
        database.dispose()
