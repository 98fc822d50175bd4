# cdnrec — `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install demo serve test lint typecheck check bench-api bench-engine bench-threads bench-merge clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# the engine's modules are compiled at install (setup.py): a changed engine source reinstalls
$(STAMP): pyproject.toml setup.py $(shell find src/cdnrec/engine -name '*.py')
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install cdnrec with its dev tools

demo: $(STAMP) ## Start cdnrec with a demo app and a synthetic live stream
	$(BIN)/cdnrec demo

serve: $(STAMP) ## Start cdnrec with CONFIG=path/to/cdnrec.toml
	$(BIN)/cdnrec serve --config $(CONFIG)

test: $(STAMP) ## Run the whole test suite (then the engine's tests again, interpreted)
	$(BIN)/pytest
	CDNREC_INTERPRETED=1 $(BIN)/pytest -q tests/engine tests/test_native.py

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check setup.py src tests bench
	$(BIN)/ruff format --check setup.py src tests bench

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy

check: lint typecheck test ## Everything CI checks

bench-api: $(STAMP) ## API throughput benchmark (needs wrk: apt-get install wrk)
	$(BIN)/python bench/api_bench.py --duration 15

bench-engine: $(STAMP) ## Recording cost: cdnrec vs nginx-rtmp, ffmpeg, PyAV in one run (needs ../shared/bench; ~25 min)
	$(BIN)/python bench/engine_bench.py

bench-threads: $(STAMP) ## Recording CPU by thread at N=1, alternating with ffmpeg (needs ../shared/bench; ~8 min)
	$(BIN)/python bench/engine_threads.py --n 1 --rounds 4 --window 30

bench-merge: $(STAMP) ## MergeMedia throughput vs ffmpeg concat
	$(BIN)/python bench/merge_bench.py --rounds 9

clean: ## Remove the venv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	find src -name '*.so' -delete
