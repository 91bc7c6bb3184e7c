"""Datasets: versioned Parquet tables in three zones (raw, processed, predictions), and sources."""

from shipyard.datasets.sources import SourceSettings, parse_sources, read_source
from shipyard.datasets.store import DatasetInfo, Datasets

__all__ = ["DatasetInfo", "Datasets", "SourceSettings", "parse_sources", "read_source"]
