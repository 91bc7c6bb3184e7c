"""Datasets: versioned Parquet tables in three zones (raw, processed, predictions), and sources."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.datasets.sources import SourceSettings, parse_sources, read_source
    from shipyard.datasets.store import DatasetInfo, Datasets

#: Each name's module, imported on first use: one store (``run_records``, ``predictions``)
#: loads without the others' pandas and Arrow.
_LAZY = {
    "SourceSettings": "shipyard.datasets.sources",
    "parse_sources": "shipyard.datasets.sources",
    "read_source": "shipyard.datasets.sources",
    "DatasetInfo": "shipyard.datasets.store",
    "Datasets": "shipyard.datasets.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DatasetInfo", "Datasets", "SourceSettings", "parse_sources", "read_source"]
