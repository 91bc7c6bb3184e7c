"""Datasets: versioned Parquet tables in three zones (raw, processed, predictions), and sources."""

from typing import TYPE_CHECKING

from shipyard.core.lazy import lazy_exports

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


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = ["DatasetInfo", "Datasets", "SourceSettings", "parse_sources", "read_source"]
