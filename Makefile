# Quanyi: `make run` starts the whole system on embedded defaults; `make test` runs every gate.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv run test bench lint fmt clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $(BENCH_STAMP)

# A local .env so that `python manage.py ...` works in a development checkout (DEBUG on). It is
# git-ignored and never overwritten; production sets its variables itself (see .env.example).
.env:
	@printf '# Local development only (made by make; never deploy it). See .env.example.\nDEBUG=true\n' > .env

run: venv .env
	@bash scripts/run.sh

test: venv .env
	@bash scripts/test.sh

bench: $(BENCH_STAMP)
	@bash scripts/bench.sh

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

fmt: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache staticfiles
