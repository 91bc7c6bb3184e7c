"""The ``[monitoring]`` and ``[monitors.NAME]`` tables of shipyard.toml, validated.

::

    [monitoring]
    drift_share = 0.5                 # dataset drift when this share of columns drifted
    window = "1d"                     # default window over the prediction log
    webhook = "https://hooks.slack.com/services/..."   # alerts (Slack-compatible JSON)
    methods = { tenure = "psi" }      # per-column drift method override
    thresholds = { tenure = 0.2 }     # per-column threshold override

    [[monitoring.alerts]]
    name = "drift"
    when = "dataset_drift"            # see shipyard.monitoring.alerts for the rule syntax
    [[monitoring.alerts]]
    name = "tenure-psi"
    when = "psi(tenure) > 0.25"

    [monitors.churn]                  # a scheduled monitor (``shipyard schedule`` runs it)
    model = "churn@production"
    cron = "0 * * * *"
    window = "1d"
    report = "reports/churn.html"     # optional: rewrite this HTML report each run
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shipyard.core.exceptions import ConfigError, InvalidArgumentError
from shipyard.core.settings import Settings, problems
from shipyard.statistics import METHODS


def parse_window(text: str) -> timedelta:
    """``"1d"``, ``"12h"``, ``"30m"``, ``"2w"`` … as a positive duration."""
    try:
        value = pd.Timedelta(text.strip())
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{text!r} is not a window; write a duration such as '1d', '12h', '30m' or '2w'"
        ) from exc
    if value <= pd.Timedelta(0):
        raise InvalidArgumentError(f"the window {text!r} must be longer than zero, e.g. '1d'")
    return timedelta(seconds=float(value.total_seconds()))


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertRuleConfig(_Table):
    """One ``[[monitoring.alerts]]`` entry."""

    name: str = ""
    when: str


class MonitoringConfig(_Table):
    """The ``[monitoring]`` table."""

    drift_share: float = Field(default=0.5, gt=0, le=1)
    window: str = "1d"
    webhook: str = ""
    methods: dict[str, str] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    alerts: list[AlertRuleConfig] = Field(default_factory=list)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: dict[str, str]) -> dict[str, str]:
        for column, method in value.items():
            if method not in METHODS:
                raise ValueError(
                    f"{column} = {method!r} is not a drift method; choose from "
                    f"{', '.join(sorted(METHODS))}"
                )
        return value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class MonitorConfig(_Table):
    """One ``[monitors.NAME]`` table: a monitor the scheduler runs."""

    model: str
    cron: str = ""
    timezone: str = "UTC"
    window: str = ""
    reference: str = ""
    report: str = ""
    enabled: bool = True

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value:
            parse_window(value)
        return value


def load_monitoring(settings: Settings) -> MonitoringConfig:
    """The validated ``[monitoring]`` table (defaults when absent)."""
    try:
        return MonitoringConfig.model_validate(settings.monitoring)
    except ValidationError as exc:
        raise ConfigError(
            f"[monitoring] in {settings.root / 'shipyard.toml'} is invalid: {problems(exc)}"
        ) from exc


def load_monitors(settings: Settings) -> dict[str, MonitorConfig]:
    """Every validated ``[monitors.NAME]`` table."""
    monitors: dict[str, MonitorConfig] = {}
    for name, table in settings.monitors.items():
        try:
            monitors[name] = MonitorConfig.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(
                f"[monitors.{name}] in {settings.root / 'shipyard.toml'} is invalid: "
                f"{problems(exc)}"
            ) from exc
    return monitors


def project_path(settings: Settings, path: str) -> Path:
    """A path written in shipyard.toml: relative paths are below the project root."""
    given = Path(path).expanduser()
    return given if given.is_absolute() else settings.root / given


def describe(config: MonitoringConfig) -> dict[str, Any]:
    """The settings a report was computed with (kept in the report)."""
    return {
        "drift_share": config.drift_share,
        "methods": dict(config.methods),
        "thresholds": dict(config.thresholds),
    }
