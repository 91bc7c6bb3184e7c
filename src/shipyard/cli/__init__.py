"""The ``shipyard`` command line: a thin layer over :class:`shipyard.Project`."""
