# Every target creates .venv when missing and installs the package with the pinned constraints.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow bench-presets demo lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The 15 slowest tests close the run: the suite's time budget (CI: under 10 minutes on 2 cores) is theirs to keep.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Every CPU preset pre-trained on the demo's data, fine-tuned from there and from random init (20+ min on
# 2 cores; BENCHMARKS.md, "CI"); exits 1 when pre-training does not help a preset. Not part of CI: the suite
# keeps a quick version for one ViT and one Swin V2 preset (tests/evaluate/test_finetune_presets.py).
bench-presets: $(STAMP)
	$(BIN)/python benchmarks/presets.py --jobs 2

demo: $(STAMP)
	$(BIN)/mimscale demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/mimscale bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
