"""Stage gates: the rules a version must pass to take an alias.

A rule compares one of the candidate's metrics with a number, or with the metric of
the version that holds an alias now::

    roc_auc >= 0.80
    roc_auc >= production.roc_auc - 0.01     # at most 0.01 worse than production
    roc_auc >= production.roc_auc * 0.99     # at most 1% worse than production
    rmse <= production.rmse * 1.01

Rules are parsed, never evaluated as code. A relative rule is ``skipped`` when no
version holds the alias yet (the first promotion has nothing to be compared with).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shipyard.core.exceptions import ConfigError
from shipyard.core.settings import GateSettings
from shipyard.registry.records import RuleResult

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_RULE_RE = re.compile(
    rf"^\s*(?P<metric>{_IDENT})\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    rf"(?:(?P<number>{_NUMBER})|(?P<alias>[A-Za-z][A-Za-z0-9_-]*)\.(?P<ref_metric>{_IDENT})"
    rf"(?:\s*(?P<arith>[-+*])\s*(?P<operand>{_NUMBER}))?)\s*$"
)

#: Looks up the version holding an alias: ``(version number, its metrics)`` or None.
HolderLookup = Callable[[str], "tuple[int, Mapping[str, float]] | None"]


@dataclass(frozen=True)
class Rule:
    """One parsed gate rule."""

    text: str
    metric: str
    op: str
    number: float | None = None
    alias: str | None = None
    ref_metric: str | None = None
    arith: str | None = None
    operand: float | None = None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse ``METRIC OP NUMBER`` or ``METRIC OP ALIAS.METRIC [+-* NUMBER]``."""
        match = _RULE_RE.match(text)
        if not match:
            raise ConfigError(
                f"gate rule {text!r} is not understood; write METRIC OP NUMBER "
                "(e.g. 'roc_auc >= 0.8') or METRIC OP ALIAS.METRIC [+|-|* NUMBER] "
                "(e.g. 'roc_auc >= production.roc_auc - 0.01')"
            )
        groups = match.groupdict()
        return cls(
            text=text.strip(),
            metric=groups["metric"],
            op=groups["op"],
            number=float(groups["number"]) if groups["number"] is not None else None,
            alias=groups["alias"],
            ref_metric=groups["ref_metric"],
            arith=groups["arith"],
            operand=float(groups["operand"]) if groups["operand"] is not None else None,
        )

    def evaluate(self, metrics: Mapping[str, float], holder: HolderLookup) -> RuleResult:
        """Check the rule against a candidate's metrics."""
        if self.metric not in metrics:
            return RuleResult(
                self.text,
                "failed",
                f"the candidate has no metric {self.metric!r}; record it at registration",
            )
        actual = float(metrics[self.metric])
        if self.number is not None:
            threshold = self.number
            against = f"{threshold:g}"
        else:
            if self.alias is None or self.ref_metric is None:  # pragma: no cover - parse invariant
                raise ConfigError(f"gate rule {self.text!r} has neither a number nor ALIAS.METRIC")
            held = holder(self.alias)
            if held is None:
                return RuleResult(
                    self.text, "skipped", f"no version holds {self.alias!r} yet: nothing to compare"
                )
            version, held_metrics = held
            if self.ref_metric not in held_metrics:
                return RuleResult(
                    self.text,
                    "failed",
                    f"{self.alias} (version {version}) has no metric {self.ref_metric!r} "
                    "to compare with",
                )
            threshold = float(held_metrics[self.ref_metric])
            if self.arith is not None and self.operand is not None:
                threshold = _ARITH[self.arith](threshold, self.operand)
            against = f"{threshold:g} ({self.alias} is version {version})"
        if math.isnan(actual) or not _OPS[self.op](actual, threshold):
            return RuleResult(
                self.text, "failed", f"{self.metric} = {actual:g}, needs {self.op} {against}"
            )
        return RuleResult(self.text, "passed", f"{self.metric} = {actual:g} {self.op} {against}")


def parse_gates(gates: Mapping[str, GateSettings]) -> dict[str, list[Rule]]:
    """Parse every rule of every gate (so a typo is reported before anything runs)."""
    return {alias: [Rule.parse(text) for text in gate.rules] for alias, gate in gates.items()}


def evaluate_gate(
    gate: GateSettings,
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    holder: HolderLookup,
    *,
    pending_sign_offs: bool = False,
) -> list[RuleResult]:
    """Every rule's outcome for a candidate, metric rules first, then required tags.

    A required tag is a sign-off a person gives (``business_value = approved``). With
    ``pending_sign_offs`` (a gate check in CI, before anyone could look) a tag not set yet
    is ``pending`` rather than ``failed``; a tag set to another value (someone said no)
    still fails. A promotion always evaluates without it.
    """
    results = [Rule.parse(text).evaluate(metrics, holder) for text in gate.rules]
    for tag, wanted in gate.require_tags.items():
        text = f"tag {tag} = {wanted}"
        if tag not in tags and pending_sign_offs:
            results.append(
                RuleResult(
                    text,
                    "pending",
                    f"tag {tag!r} is not set yet: a person signs it off "
                    "before the promotion, which requires it",
                )
            )
        elif tag not in tags:
            results.append(
                RuleResult(text, "failed", f"tag {tag!r} is missing; set it on the version")
            )
        elif wanted not in ("*", str(tags[tag])):
            results.append(RuleResult(text, "failed", f"tag {tag!r} is {tags[tag]!r}"))
        else:
            results.append(RuleResult(text, "passed", f"tag {tag!r} is {tags[tag]!r}"))
    return results
