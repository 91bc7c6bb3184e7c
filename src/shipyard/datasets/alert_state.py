"""The state of alert rules: which ones currently hold, per rule and subject (``alert_state``).

:class:`AlertStates` is the one reader and writer of the ``alert_state`` table; the rules and
their delivery live in :mod:`shipyard.monitoring.alerts`. A subject is a monitor
(``churn/hourly``) or a model version (``churn:3``). A change of state is *claimed* with one
conditional ``UPDATE`` (or the first ``INSERT``) before the alert is sent, so two monitors
running at once send it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.clock import utcnow
from shipyard.store import Database
from shipyard.store.tables import AlertState


class AlertStates:
    """Whether each alert rule holds, per subject, in the ``alert_state`` table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def states(self, *, model: str | None = None, limit: int = 200) -> list[AlertInfo]:
        """The recorded states, firing first then newest (of ``model``): see :func:`list_alerts`."""
        return list_alerts(self.database, model=model, limit=limit)

    def active(self, rule: str, subject: str) -> bool:
        """Whether ``rule`` holds for ``subject`` (False when it was never recorded)."""
        query = sa.select(AlertState.active).where(
            AlertState.rule == rule, AlertState.model == subject
        )
        with self.database.session() as session:
            return bool(session.scalar(query))

    def claim(self, rule: str, subject: str, active: bool, value: float | None) -> bool:
        """Move the rule to ``active`` if it is not there yet; False if someone else did."""
        now = utcnow()
        changed = (
            sa.update(AlertState)
            .where(
                AlertState.rule == rule,
                AlertState.model == subject,
                AlertState.active.is_not(active),
            )
            .values(active=active, value=value, since=now if active else None, updated_at=now)
        )
        try:
            with self.database.session() as session:
                if session.execute(changed).rowcount:  # type: ignore[attr-defined]
                    return True
                exists = session.scalar(
                    sa.select(AlertState.id).where(
                        AlertState.rule == rule, AlertState.model == subject
                    )
                )
                if exists is not None or not active:
                    return False
                session.add(AlertState(rule=rule, model=subject, active=True, value=value,
                                       since=now, updated_at=now))  # fmt: skip
            return True
        except IntegrityError:  # another monitor created the row at the same instant
            return False


@dataclass(frozen=True)
class AlertInfo:
    """One alert rule's state for one subject (a monitor ``churn/hourly`` or ``churn:3``)."""

    rule: str
    subject: str
    active: bool
    value: float | None
    since: datetime | None
    updated_at: datetime

    @property
    def model(self) -> str:
        """The model the subject belongs to."""
        return re.split(r"[/:@]", self.subject, maxsplit=1)[0]


def list_alerts(
    database: Database, *, model: str | None = None, limit: int = 200
) -> list[AlertInfo]:
    """The recorded alert states, firing ones first then the newest changes (of ``model``)."""
    query = sa.select(
        AlertState.rule,
        AlertState.model,
        AlertState.active,
        AlertState.value,
        AlertState.since,
        AlertState.updated_at,
    )
    if model is not None:
        query = query.where(
            sa.or_(
                AlertState.model == model,
                AlertState.model.like(f"{_escaped(model)}/%", escape="\\"),
                AlertState.model.like(f"{_escaped(model)}:%", escape="\\"),
                AlertState.model.like(f"{_escaped(model)}@%", escape="\\"),
            )
        )
    query = query.order_by(AlertState.active.desc(), AlertState.updated_at.desc()).limit(limit)
    with database.engine.connect() as connection:
        return [AlertInfo(*row) for row in connection.execute(query)]


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
