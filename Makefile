# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-project
DEMO_SERVE ?= 1
DEMO_PORT ?= 8000
AIRFLOW_VENV := .venv-airflow
EVIDENTLY_VENV := .venv-evidently
MLSERVER_VENV := .venv-mlserver

.PHONY: demo test lint bench bench-grpc bench-batch bench-monitor bench-soak bench-console clean

include mk/superset.mk

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-runtime

# Airflow's pins clash with ours: its own virtualenv, used only to parse exported DAGs in tests.
$(AIRFLOW_VENV)/bin/python:
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet 'apache-airflow==3.3.*' || (rm -rf $(AIRFLOW_VENV); exit 1)

# Evidently 0.7 needs pandas < 3: its own virtualenv, used only by the drift benchmark.
$(EVIDENTLY_VENV)/bin/python:
	$(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/pip install --quiet 'evidently==0.7.*' 'pandas<3' pyarrow || (rm -rf $(EVIDENTLY_VENV); exit 1)

# Seldon MLServer (its own pins): its own virtualenv, the peer server of the serving benchmark.
# uvloop 0.22 breaks MLServer 1.7.1's inference workers (SeldonIO/MLServer#2286): keep 0.21.
$(MLSERVER_VENV)/bin/python:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install --quiet 'mlserver==1.7.*' 'mlserver-sklearn==1.7.*' 'uvloop<0.22' || (rm -rf $(MLSERVER_VENV); exit 1)

demo: $(VENV)/.installed-runtime
	$(BIN)/shipyard quickstart $(DEMO_DIR)
ifneq ($(DEMO_SERVE),0)
	@echo "Serving churn@production with the web console (Ctrl-C stops; DEMO_SERVE=0 skips this):"
	$(BIN)/shipyard serve --project $(DEMO_DIR) --port $(DEMO_PORT)
endif

# The container tests (marked docker) need a Docker daemon: .ci/run starts one with
# .ci/docker.sh (as root); elsewhere they skip, saying why. They stay on one worker.
test: $(VENV)/.installed-dev $(AIRFLOW_VENV)/bin/python $(SUPERSET_VENV)/bin/python
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadgroup -m "not browser"
	# Playwright's sync API keeps an event loop running for its session: the browser tests
	# get a process of their own, so no async test ever shares a loop with them.
	OMP_NUM_THREADS=1 $(BIN)/pytest -m browser tests/serving/console

# The model-server benchmark (needs wrk: apt-get install wrk); results go in docs/benchmarks.md.
bench: $(VENV)/.installed-dev $(MLSERVER_VENV)/bin/python
	$(BIN)/python bench/serve_bench.py

# OIP v2 over gRPC: shipyard serve --grpc-port against MLServer's gRPC, same model, same run.
bench-grpc: $(VENV)/.installed-dev $(MLSERVER_VENV)/bin/python
	OMP_NUM_THREADS=1 $(BIN)/python bench/grpc_bench.py

# The batch scoring benchmark (1,000,000 rows Parquet → Parquet); results go in docs/benchmarks.md.
bench-batch: $(VENV)/.installed-dev
	$(BIN)/python bench/batch_bench.py

# The drift benchmark (1M reference + 1M current rows, shipyard vs Evidently); results go in docs/benchmarks.md.
bench-monitor: $(VENV)/.installed-dev $(EVIDENTLY_VENV)/bin/python
	$(BIN)/python bench/monitor_bench.py

# The soak: 10 minutes at 80 % of capacity, valid, invalid and oversized requests, memory flat.
bench-soak: $(VENV)/.installed-dev
	$(BIN)/python bench/soak_bench.py

# The console's pages on 10,000 runs / 1,000 versions / 5,000 reports (needs chromium).
bench-console: $(VENV)/.installed-dev
	$(BIN)/python bench/console_bench.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(EVIDENTLY_VENV) $(MLSERVER_VENV) $(SUPERSET_VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
