"""Alert rules on monitoring reports, and their delivery to a webhook and the log.

A rule is the ``when`` of a ``[[monitoring.alerts]]`` entry:

- ``dataset_drift`` or ``prediction_drift``: fires when the report says so;
- ``QUANTITY OP NUMBER`` with OP one of ``> >= < <= == !=`` and QUANTITY one of
  ``drift_share``, ``prediction_drift_share``, ``failing_share``, ``duplicates``,
  ``missing_share`` (the largest of any column), ``missing_share(COLUMN)``,
  ``score(COLUMN)`` (the column's drift score with its method), ``psi(COLUMN)`` (the
  column's PSI, computed for the rule whatever the column's method), a performance metric
  (``f1``, ``accuracy``, ``roc_auc``, ``rmse``…), ``change(METRIC)`` (its relative change
  from the evaluation recorded at registration: ``change(f1) < -0.05`` is "F1 down more than
  5 %") or ``value(NAME)`` (the window's business value, e.g. ``value(net_per_period) < 0``).

Each rule is one condition per model: it alerts once when it starts to hold, stays quiet
while it holds, and sends a "resolved" message when it clears (its state is kept by
:class:`~shipyard.datasets.alert_state.AlertStates`). A quantity the report does not have
(no ground truth yet, say) leaves the state as it is.
Messages go to the log and, with ``[monitoring] webhook``, are POSTed as Slack-compatible
JSON (``{"text": ...}`` plus a ``shipyard`` object with the details); a failed delivery is
logged and the alert is sent again on the next run.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard.core.exceptions import ConfigError
from shipyard.datasets.alert_state import AlertStates
from shipyard.monitoring.settings import AlertRuleConfig
from shipyard.statistics.report import MonitoringReport
from shipyard.store import Database

logger = logging.getLogger("shipyard.monitoring.alerts")

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_RULE = re.compile(
    r"^\s*(?P<quantity>[a-z_][a-z0-9_]*(?:\((?P<arg>[^()]+)\))?)\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<number>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)
_FLAGS = ("dataset_drift", "prediction_drift")
_PLAIN = ("drift_share", "prediction_drift_share", "failing_share", "duplicates", "missing_share")
_WITH_COLUMN = ("missing_share", "score", "psi", "change", "value")


@dataclass(frozen=True)
class Rule:
    """One parsed alert rule."""

    name: str
    when: str
    quantity: str  # e.g. "psi"
    argument: str | None = None  # e.g. "tenure"
    op: str | None = None
    threshold: float | None = None

    def value(self, report: MonitoringReport) -> float | None:
        """The quantity in ``report``, or ``None`` when it has none."""
        return _quantity(report, self.quantity, self.argument)

    def holds(self, report: MonitoringReport) -> bool | None:
        """Whether the rule holds for ``report`` (``None``: cannot tell)."""
        value = self.value(report)
        if value is None:
            return None
        if self.op is None or self.threshold is None:
            return bool(value)
        return _OPS[self.op](value, self.threshold)


def parse_rules(configs: Sequence[AlertRuleConfig]) -> list[Rule]:
    """Parse every rule; :class:`ConfigError` names a wrong one and shows the syntax."""
    rules: list[Rule] = []
    for number, config in enumerate(configs):
        text = config.when.strip()
        name = config.name or text
        if text in _FLAGS:
            rules.append(Rule(name, text, text))
            continue
        match = _RULE.match(text)
        quantity = match.group("quantity").split("(")[0] if match else ""
        arg = match.group("arg").strip() if match and match.group("arg") else None
        known = (arg is None and quantity in _PLAIN) or (
            arg is not None and quantity in _WITH_COLUMN
        )
        if not known and match and arg is None and quantity.isidentifier():
            known = quantity not in _WITH_COLUMN  # a performance metric such as f1
        if match is None or not known:
            raise ConfigError(
                f"[[monitoring.alerts]] #{number + 1} has when = {config.when!r}, which is not a "
                "rule; write 'dataset_drift', 'prediction_drift' or 'QUANTITY OP NUMBER', e.g. "
                "'psi(tenure) > 0.25', 'change(f1) < -0.05', 'missing_share(plan) > 0.1', "
                "'drift_share >= 0.3'"
            )
        rules.append(
            Rule(name, text, quantity, arg, match.group("op"), float(match.group("number")))
        )
    long = next((r for r in rules if len(r.name) > 128), None)
    if long is not None:
        raise ConfigError(
            f"the alert {long.name[:40]!r}… has a name over 128 characters; give it a shorter "
            'name = "..."'
        )
    names = [r.name for r in rules]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ConfigError(f"two [[monitoring.alerts]] are named {duplicate!r}; name each once")
    return rules


#: Names a performance quantity may take (``f1``, ``change(f1)``, ``value(roi)``).
METRICS = frozenset(
    {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse", "mape", "r2"}
)


def check_rules(rules: Sequence[Rule], columns: Sequence[str], values: Sequence[str]) -> None:
    """Refuse a rule naming a column the model does not have, or an unknown metric."""
    for rule in rules:
        if rule.quantity in ("missing_share", "score", "psi") and rule.argument is not None:
            known, what = columns, "column"
        elif rule.quantity == "change":
            known, what = sorted(METRICS), "metric"
        elif rule.quantity == "value":
            known, what = values, "business value"
        elif rule.quantity not in (*_FLAGS, *_PLAIN):
            known, what = sorted(METRICS), "metric"
        else:
            continue
        name = rule.argument if rule.argument is not None else rule.quantity
        if name not in known:
            raise ConfigError(
                f"alert {rule.name!r} ({rule.when}) names the {what} {name!r}, which this "
                f"model's reports do not have; choose from {', '.join(known)}"
            )


def psi_columns(rules: Sequence[Rule]) -> list[str]:
    """Columns whose PSI a rule needs."""
    return sorted({r.argument for r in rules if r.quantity == "psi" and r.argument})


def _quantity(report: MonitoringReport, quantity: str, argument: str | None) -> float | None:
    quality, outputs = report.quality, report.prediction_drift
    if quantity == "dataset_drift":
        return float(report.drift.dataset_drift)
    if quantity == "prediction_drift":
        return float(outputs.dataset_drift) if outputs is not None else None
    if quantity == "drift_share":
        return float(report.drift.drift_share)
    if quantity == "prediction_drift_share":
        return float(outputs.drift_share) if outputs is not None else None
    if quantity == "failing_share":
        return float(quality.failing_share)
    if quantity == "duplicates":
        return float(quality.duplicates)
    if quantity == "missing_share":
        shares = {c.column: float(c.missing_share) for c in quality.columns}
        if argument is None:
            return max(shares.values(), default=0.0)
        return shares.get(argument)
    if quantity == "score":  # a score that is not a number cannot be compared
        score = {c.column: c.score for c in report.drift.columns}.get(argument or "")
        return float(score) if score is not None and math.isfinite(score) else None
    if quantity == "psi":
        psi = report.psi.get(argument or "")
        return float(psi) if psi is not None else None
    performance = report.performance
    if performance is None:  # no ground truth yet
        return None
    if quantity == "change":  # no relative change from a baseline of 0
        relative = (performance.comparison.get(argument or "") or {}).get("relative_change")
        return float(relative) if relative is not None else None
    if quantity == "value":
        worth = (performance.value or {}).get(argument or "")
        return float(worth) if isinstance(worth, int | float) else None
    metric = performance.metrics.get(quantity)
    return float(metric) if metric is not None else None


@dataclass(frozen=True)
class AlertEvent:
    """What one rule did on one report."""

    rule: str
    when: str
    state: str  # fired | active | resolved | quiet | unknown
    value: float | None
    message: str
    delivered: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the report's ``alerts``)."""
        return {
            "rule": self.rule,
            "when": self.when,
            "state": self.state,
            "value": self.value,
            "message": self.message,
            "delivered": self.delivered,
        }


def _post(url: str, body: Mapping[str, Any], timeout: float) -> bool:
    if not url.startswith(("http://", "https://")):  # never file: or custom schemes
        logger.warning("not delivering an alert to %r: webhooks are http:// or https:// URLs", url)
        return False
    request = urllib.request.Request(  # noqa: S310 - http(s) only: checked above
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        logger.warning("could not deliver an alert to %s: %s (sent again next run)", url, exc)
        return False


class Alerts:
    """Evaluates rules on reports, keeps their state and sends what changed.

    State is kept per rule and ``subject``: a monitor (``churn/hourly``) or a model version
    (``churn:3``), so two versions or two monitors of one model never reset each other's
    alerts. A change of state is claimed with one conditional ``UPDATE`` before it is sent,
    so two monitors running at once send it once.
    """

    def __init__(
        self,
        database: Database,
        rules: Sequence[Rule],
        webhook: str = "",
        timeout: float = 5.0,
        *,
        subject: str,
    ) -> None:
        self.database = database
        self.states = AlertStates(database)
        self.rules = list(rules)
        self.webhook = webhook
        self.timeout = timeout
        self.subject = subject

    def evaluate(self, report: MonitoringReport, *, dry_run: bool = False) -> list[AlertEvent]:
        """Apply every rule to ``report``; send and record what started or cleared.

        ``dry_run`` (a report that is not stored) says what would happen and changes nothing.
        """
        events = []
        where = f"{report.model}:{report.version}"
        for rule in self.rules:
            holds = rule.holds(report)
            value = rule.value(report)
            active = self.states.active(rule.name, self.subject)
            if holds is None:
                note = f"{rule.name}: not measurable in this report"
                events.append(AlertEvent(rule.name, rule.when, "unknown", None, note))
            elif holds == active:
                state, note = ("active", "still holds") if holds else ("quiet", "")
                shown = f"{rule.name}: {note} ({_shown(value)})" if note else ""
                events.append(AlertEvent(rule.name, rule.when, state, value, shown))
            else:
                state = "fired" if holds else "resolved"
                text = f"{rule.when} ({_shown(value)})" if holds else f"resolved ({_shown(value)})"
                message = f"[shipyard] {where}: {rule.name} — {text}"
                if dry_run:
                    events.append(AlertEvent(rule.name, rule.when, state, value,
                                             f"{message} (not sent: the report is not stored)",
                                             delivered=False))  # fmt: skip
                    continue
                claimed = self.states.claim(rule.name, self.subject, holds, value)
                if not claimed:  # another monitor just did
                    continue
                delivered = self._send(message, rule, report, value, state)
                if not delivered:  # back as it was: the next run sends it again
                    self.states.claim(rule.name, self.subject, not holds, value)
                events.append(AlertEvent(rule.name, rule.when, state, value, message, delivered))
        return events

    def _send(
        self, message: str, rule: Rule, report: MonitoringReport, value: float | None, state: str
    ) -> bool:
        logger.warning(message)
        if not self.webhook:
            return True
        body = {
            "text": message,
            "shipyard": {
                "rule": rule.name,
                "when": rule.when,
                "state": "firing" if state == "fired" else state,
                "model": report.model,
                "version": report.version,
                "subject": self.subject,
                "value": value,
                "computed_at": report.computed_at.isoformat(),
            },
        }
        return _post(self.webhook, body, self.timeout)


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
