"""What the registry returns: plain, immutable records that render to JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shipyard.core.schema import Signature


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one gate rule: ``passed``, ``failed``, ``skipped`` (nothing to compare)
    or ``pending`` (a sign-off tag not set yet, in a check that allows it)."""

    rule: str
    status: str
    detail: str

    @property
    def passed(self) -> bool:
        """False only when the rule failed."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"rule": self.rule, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class GateCheck:
    """A stage's gate evaluated for a version without promoting it (``shipyard gate``)."""

    name: str
    version: int
    stage: str
    #: the version holding the stage now (None: nobody)
    holder: int | None
    #: the version relative rules compared with (the holder of their alias, or --baseline)
    baseline: int | None
    baseline_metrics: dict[str, float]
    metrics: dict[str, float]
    tags: dict[str, str]
    results: tuple[RuleResult, ...]
    #: metrics a rule needs that the candidate (or the baseline) lacks: an error, not a verdict
    missing: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no rule failed."""
        return all(result.passed for result in self.results)

    @property
    def pending(self) -> tuple[str, ...]:
        """The sign-offs still to give before the promotion (``--pending-sign-offs``)."""
        return tuple(result.rule for result in self.results if result.status == "pending")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard gate --format json``)."""
        return {
            "model": self.name,
            "version": self.version,
            "stage": self.stage,
            "holder": self.holder,
            "baseline": self.baseline,
            "outcome": "passed" if self.passed else "refused",
            "pending": list(self.pending),
            "rules": [result.to_dict() for result in self.results],
            "missing": list(self.missing),
            "metrics": self.metrics,
            "baseline_metrics": self.baseline_metrics,
        }


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version."""

    name: str
    version: int
    flavor: str
    artifact_digest: str
    status: str
    created_at: datetime
    created_by: str
    description: str
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, str]
    lineage: dict[str, Any]
    flavor_config: dict[str, Any]
    signature: Signature | None
    input_example: list[dict[str, Any]] | None
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``NAME:VERSION``."""
        return f"{self.name}:{self.version}"

    @property
    def trusted_types(self) -> list[str]:
        """What the user trusted at registration (skops types, or ``pickle``)."""
        return list(self.flavor_config.get("trusted_types", []))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard models show --json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "flavor": self.flavor,
            "status": self.status,
            "aliases": list(self.aliases),
            "artifact_digest": self.artifact_digest,
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
            "description": self.description,
            "metrics": self.metrics,
            "params": self.params,
            "tags": self.tags,
            "lineage": self.lineage,
            "trusted_types": self.trusted_types,
            "flavor_config": self.flavor_config,
            "signature": self.signature.to_dict() if self.signature else None,
            "input_example": self.input_example,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A registered model with a summary of its versions."""

    name: str
    description: str
    latest_version: int | None
    version_count: int
    aliases: dict[str, int] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard models list --json``)."""
        return {
            "name": self.name,
            "description": self.description,
            "latest_version": self.latest_version,
            "versions": self.version_count,
            "aliases": self.aliases,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class PromotionInfo:
    """One recorded decision about an alias."""

    id: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    outcome: str
    forced: bool
    reason: str
    actor: str
    at: datetime
    gate: tuple[RuleResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``shipyard models history --json``)."""
        return {
            "id": self.id,
            "name": self.name,
            "alias": self.alias,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "outcome": self.outcome,
            "forced": self.forced,
            "reason": self.reason,
            "actor": self.actor,
            "at": _iso(self.at),
            "gate": [r.to_dict() for r in self.gate],
        }
