# Set-up and the two everyday commands. Each target creates .venv when it is missing.
# `make test` runs the suite on four pytest-xdist workers: most tests wait on an engine
# process or a timer, so on two cores four finish sooner than two (pytest 4:53 against 5:28,
# measured here).
# Tests that share a module-wide fixture stay on one worker (tests/conftest.py). A plain
# `pytest` runs in one process.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test bench lint

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/resnet-tui run

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n 4 --dist loadgroup

lint: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
