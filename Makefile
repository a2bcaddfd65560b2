# The set-up commands of the README: `make demo`, `make test` (everything: what CI runs) and
# `make test-fast` (the unit tests: no test marked slow). Each creates .venv on first use (CPU
# build of torch first: an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python launch.py sweep spaces/digits_cnn.yaml

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs
