"""Business value: is a model worth it? Expected EBITDA, ROI and payback from a held-out set.

Declare a value model in the ``[value]`` table of shipyard.toml (:class:`ValueSettings`), then
compute a :class:`ValueReport` with :func:`business_value`; its :meth:`ValueReport.metrics`
are flat, finite float metrics usable in stage-gate rules such as ``roi >= 1.5``. The
definitions of every number are in :mod:`shipyard.value.model`.
"""

from shipyard.value.model import METRIC_NAMES, UNBOUNDED, ValueReport, business_value
from shipyard.value.settings import ClassificationValue, RegressionValue, ValueSettings

__all__ = [
    "METRIC_NAMES",
    "UNBOUNDED",
    "ClassificationValue",
    "RegressionValue",
    "ValueReport",
    "ValueSettings",
    "business_value",
]
