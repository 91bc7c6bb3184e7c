"""Monitoring statistics: reference profiles, drift tests, data quality and performance metrics.

Pure computation on Arrow and numpy data; nothing here touches a store.

- :func:`compare` tests each column of a current dataset for drift from a reference with
  Evidently 0.7's statistics (KS, chi-squared, Z, normed Wasserstein, Jensen-Shannon,
  PSI) and its defaults; rows come from Arrow tables, pandas frames or Parquet files, read
  one column at a time.
- :func:`profile` summarises a dataset in a compact, mergeable :class:`DatasetProfile`
  that :func:`compare` accepts in place of the rows.
"""

from shipyard.statistics._sources import ColumnSource, ParquetSource, TableSource, as_column_source
from shipyard.statistics._stattests import DEFAULT_THRESHOLDS, METHODS
from shipyard.statistics.drift import ColumnDrift, DriftOptions, DriftReport, compare
from shipyard.statistics.profile import ColumnProfile, DatasetProfile, profile

__all__ = [
    "DEFAULT_THRESHOLDS",
    "METHODS",
    "ColumnDrift",
    "ColumnProfile",
    "ColumnSource",
    "DatasetProfile",
    "DriftOptions",
    "DriftReport",
    "ParquetSource",
    "TableSource",
    "as_column_source",
    "compare",
    "profile",
]
