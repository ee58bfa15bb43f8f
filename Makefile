# Every target creates .venv when missing and installs the package with the pinned constraints.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow test-presets demo lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Every CPU preset pre-trained on the demo's data fine-tunes better than from random init (~10 min on 2 cores).
test-presets: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m slow tests/evaluate/test_finetune_presets.py

demo: $(STAMP)
	$(BIN)/mimscale demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/mimscale bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
