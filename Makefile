# KasPro chat wallet. `make test` and `make chat` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test chat lint typecheck pytest setup clean bench

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy wallet flows

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

chat: $(STAMP)
	$(BIN)/kaspro chat

bench: $(STAMP)
	$(BIN)/python bench/ledger.py --json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
