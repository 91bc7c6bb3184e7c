"""The one clock: timezone-aware UTC now, for every layer (the store's default times too)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
