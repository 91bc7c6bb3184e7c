"""The model registry: versions, aliases, stage gates and the decision history."""

from typing import TYPE_CHECKING

from shipyard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.registry.gates import Rule, evaluate_gate, parse_gates
    from shipyard.registry.promotions import STAGES
    from shipyard.registry.records import (
        GateCheck,
        ModelInfo,
        PromotionInfo,
        RuleResult,
        VersionInfo,
    )
    from shipyard.registry.registry import Registry

#: Each name's module, imported on first use: ``records`` and ``tokens`` (what listings and
#: renderers need) load without the registry's model libraries.
_LAZY = {
    "Rule": "shipyard.registry.gates",
    "evaluate_gate": "shipyard.registry.gates",
    "parse_gates": "shipyard.registry.gates",
    "STAGES": "shipyard.registry.promotions",
    "GateCheck": "shipyard.registry.records",
    "ModelInfo": "shipyard.registry.records",
    "PromotionInfo": "shipyard.registry.records",
    "RuleResult": "shipyard.registry.records",
    "VersionInfo": "shipyard.registry.records",
    "Registry": "shipyard.registry.registry",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "STAGES",
    "GateCheck",
    "ModelInfo",
    "PromotionInfo",
    "Registry",
    "Rule",
    "RuleResult",
    "VersionInfo",
    "evaluate_gate",
    "parse_gates",
]
