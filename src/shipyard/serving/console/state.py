"""What the console's pages read: the server's state, the sessions and the domain stores.

Built once by :func:`~shipyard.serving.console.console_app` and kept on the console app's
``state.console``; pages call :func:`console_state` instead of opening stores themselves.
Every store here is the domain layer's owner of its tables (docs/architecture.md): the
console never reads a table directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.datasets.alert_state import AlertStates
from shipyard.datasets.feedback import FeedbackStore
from shipyard.datasets.monitor_results import MonitorResults
from shipyard.datasets.prediction_log import PredictionLogStore
from shipyard.datasets.run_records import Runs
from shipyard.serving.console.session import Sessions
from shipyard.serving.state import ServerState


@dataclass(frozen=True)
class ConsoleState:
    """The console's view of one server."""

    server: ServerState
    sessions: Sessions
    runs: Runs
    monitor_results: MonitorResults
    alerts: AlertStates
    feedback: FeedbackStore
    prediction_log: PredictionLogStore

    @property
    def project_name(self) -> str:
        """The project's name (``[project] name``), for titles."""
        return self.server.registry.settings.project.name or "shipyard"


def console_state(request: Any) -> ConsoleState:
    """The :class:`ConsoleState` of the console app answering ``request``."""
    state = request.app.state.console
    if not isinstance(state, ConsoleState):  # pragma: no cover - only console_app sets it
        raise TypeError(f"app.state.console must be a ConsoleState, got {type(state).__name__}")
    return state
