# The two set-up commands of the README: `make demo` and `make test`. Both create .venv on
# first use (CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python launch.py sweep spaces/digits_cnn.yaml

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
