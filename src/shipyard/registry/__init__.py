"""The model registry: versions, aliases, stage gates and the decision history."""

from shipyard.registry.gates import Rule, evaluate_gate, parse_gates
from shipyard.registry.promotions import STAGES
from shipyard.registry.records import ModelInfo, PromotionInfo, RuleResult, VersionInfo
from shipyard.registry.registry import Registry

__all__ = [
    "STAGES",
    "ModelInfo",
    "PromotionInfo",
    "Registry",
    "Rule",
    "RuleResult",
    "VersionInfo",
    "evaluate_gate",
    "parse_gates",
]
