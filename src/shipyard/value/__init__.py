"""Business value: is a model worth it? Expected EBITDA, ROI and payback from a held-out set.

Declare a value model in the ``[value]`` table of shipyard.toml (:class:`ValueSettings`), then
compute a :class:`ValueReport` with :func:`business_value`; its :meth:`ValueReport.metrics`
are flat, finite float metrics usable in stage-gate rules such as ``roi >= 1.5``. The
definitions of every number are in :mod:`shipyard.value.model`.
"""

from typing import TYPE_CHECKING

from shipyard.core.lazy import lazy_exports

if TYPE_CHECKING:
    from shipyard.value.model import METRIC_NAMES, UNBOUNDED, ValueReport, business_value
    from shipyard.value.settings import ClassificationValue, RegressionValue, ValueSettings

#: Each name's module, imported on first use: reading the ``[value]`` table loads no numpy.
_LAZY = {
    "METRIC_NAMES": "shipyard.value.model",
    "UNBOUNDED": "shipyard.value.model",
    "ValueReport": "shipyard.value.model",
    "business_value": "shipyard.value.model",
    "ClassificationValue": "shipyard.value.settings",
    "RegressionValue": "shipyard.value.settings",
    "ValueSettings": "shipyard.value.settings",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "METRIC_NAMES",
    "UNBOUNDED",
    "ClassificationValue",
    "RegressionValue",
    "ValueReport",
    "ValueSettings",
    "business_value",
]
