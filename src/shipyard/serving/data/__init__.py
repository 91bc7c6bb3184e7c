"""The data API beside the model server: stored predictions and dataset versions for other
applications (``/v1/predictions``, ``/v1/datasets``) and ground truth (``POST /v1/feedback``).
It reads and writes the domain stores (:mod:`shipyard.datasets`); it runs no model."""
