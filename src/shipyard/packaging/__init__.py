"""The packaging stage: ``shipyard build`` (a container image) and ``shipyard compose``.

- :mod:`~shipyard.packaging.settings`: the ``[deploy]`` table.
- :mod:`~shipyard.packaging.lock` and :mod:`~shipyard.packaging.image`: the image's build
  context (Dockerfile from a Jinja2 template, pinned lock, host-built wheelhouse,
  ``.dockerignore``, the project's code and settings) and the ``docker build`` call.
- :mod:`~shipyard.packaging.compose` and the files of each service
  (:mod:`~shipyard.packaging.prometheus`, :mod:`~shipyard.packaging.grafana`,
  :mod:`~shipyard.packaging.superset`, :mod:`~shipyard.packaging.local_images`): the
  architecture as one Compose file with profiles.
"""
