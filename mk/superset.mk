# Superset's pins clash with ours: its own virtualenv, used only by the `bi` profile's end-to-end
# test (tests/packaging/test_superset.py), which runs the generated init.sh and bundle import
# against a real Superset. Same release as the image the compose file builds on
# (apache/superset:6.0.0); its CLI imports rich, which the wheel does not declare.
SUPERSET_VENV := .venv-superset

$(SUPERSET_VENV)/bin/python:
	$(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install --quiet 'apache-superset==6.0.0' 'psycopg2-binary==2.9.10' 'rich>=13' || (rm -rf $(SUPERSET_VENV); exit 1)
