"""Runnable demonstrations of shipyard on synthetic data (no downloads).

- :mod:`shipyard.demo.churn`: a synthetic telecom churn table and the models trained on it.
- :mod:`shipyard.demo.quickstart`: ``run_quickstart(DIR)``, the walk-through behind
  ``shipyard quickstart DIR`` and ``make demo``.

Nothing is imported here, so ``import shipyard.demo`` stays cheap; import the modules.
"""
