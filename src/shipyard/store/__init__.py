"""Storage: the metadata database (SQLAlchemy + Alembic) and the artifact store (fsspec)."""

from shipyard.store.artifacts import ArtifactStore, sha256_file
from shipyard.store.database import Database, head_revision

__all__ = ["ArtifactStore", "Database", "head_revision", "sha256_file"]
