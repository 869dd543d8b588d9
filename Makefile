# Two commands do all the set-up on a fresh machine: `make train` and `make test`.
# The virtual environment is installed once per version of pyproject.toml (the stamp is keyed on its hash).
# pip compiles the 24,000 installed modules to bytecode one at a time (150 of the 232 s a fresh install took):
# compileall does it on every core instead (80 s; pip's install without it, 82 s). Bytecode is needed up
# front: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines) imports would never cache it,
# and a run would take 17 s of CPU instead of 8.5. A file only another Python can compile (torch ships
# one for 3.12) is skipped, as pip skips it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: install browser train lint check-lock test bench ui serve repro params clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev]"
	$(BIN)/python -m compileall -qq -j 0 "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		>/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $@

train: install
	$(BIN)/python -m src.train $(ARGS)

# Debian's chromium for the UI test (tests/test_mlflow_server.py); needs root and apt-get, else the test skips.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed (needs root and apt-get): the UI test will skip"

# Lint (ruff), format check (ruff format) and type check (mypy on src/), configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The committed dvc.lock must certify the code and params beside it (`dvc status` clean, less what only
# the DVC cache holds): else one line says to run `make repro` and commit.
check-lock: install
	$(BIN)/python -m pipelines.check_lock

# The suite in TEST_WORKERS processes (pytest-xdist; a test file stays in one process, so its module
# fixtures are built once), then the tests marked serial alone. Exit status 5 is "no test selected"
# (a PYTEST_ARGS filter that leaves one part empty).
TEST_WORKERS ?= 2
test: install browser lint check-lock
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --serial=skip $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest --serial=only $(PYTEST_ARGS) || [ $$? -eq 5 ]

bench: install
	$(BIN)/python -m benchmarks.run

# The DVC pipeline (dvc.yaml): stages run `python` from the venv.
repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro $(ARGS)

# After changing conf/: write params.yaml as conf/ composes (what plain `dvc repro` reads).
params: install
	$(BIN)/python -m pipelines.params

# The MLflow UI on the project's store, on this machine only.
ui: install
	@$(BIN)/python -m src.runs page --tracking-uri sqlite:///$(CURDIR)/mlflow.db | sed 's/^/the runs table: /' || true
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

# A logged or registered model over HTTP on this machine only: make serve MODEL=models:/NAME@champion [PORT=5001].
# From the venv that trained it (no install here: serving needs a trained model, so the venv exists), with
# its bin on PATH, where MLflow looks for `uvicorn`. The store: $MLFLOW_TRACKING_URI, else the project's.
PORT ?= 5001
serve:
	@test -n "$(MODEL)" || { echo "error: give the model: make serve MODEL=<models:/NAME@champion, models:/<model id> or runs:/<run id>/model>" >&2; exit 2; }
	@test -x $(BIN)/mlflow || { echo "error: no MLflow in $(VENV): run make install (or make train) first" >&2; exit 2; }
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
		$(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 -p $(PORT)

clean:
	rm -rf outputs .pytest_cache
