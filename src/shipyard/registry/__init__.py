"""The model registry: versions, aliases, stage gates and the decision history."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.registry.gates import Rule, evaluate_gate, parse_gates
    from shipyard.registry.promotions import STAGES
    from shipyard.registry.records import ModelInfo, PromotionInfo, RuleResult, VersionInfo
    from shipyard.registry.registry import Registry

#: Each name's module, imported on first use: ``records`` and ``tokens`` (what listings and
#: renderers need) load without the registry's model libraries.
_LAZY = {
    "Rule": "shipyard.registry.gates",
    "evaluate_gate": "shipyard.registry.gates",
    "parse_gates": "shipyard.registry.gates",
    "STAGES": "shipyard.registry.promotions",
    "ModelInfo": "shipyard.registry.records",
    "PromotionInfo": "shipyard.registry.records",
    "RuleResult": "shipyard.registry.records",
    "VersionInfo": "shipyard.registry.records",
    "Registry": "shipyard.registry.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
