# flurka — `make help` lists the targets. Everything runs from a local virtual environment (.venv).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= smoke
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed ## create .venv and install flurka with its dev tools

test: install ## run the test suite (CPU; Triton kernels through the interpreter)
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

test-gpu: install ## run only the GPU tests (needs CUDA)
	$(BIN)/python -m pytest -q -m gpu $(PYTEST_ARGS)

lint: install ## ruff lint + format check
	$(BIN)/ruff check flurka scripts tests
	$(BIN)/ruff format --check flurka scripts tests

demo: install ## train full vs FLuRKA-Performer GPTs on the bundled Shakespeare and print a table
	$(BIN)/python scripts/demo.py

smoke: install ## one tiny training run per attention variant on CPU
	for a in full flash performer linear eva flurka_performer flurka_rnn flurka_eva scfa_qk scfa_hash lightning; do \
	  $(BIN)/python scripts/train.py scale=smoke logger=none trainer.progress=false group=smoke attention=$$a || exit 1; \
	done

# ---- speed figures (GPU): each writes results/speed/<suite>.json with provenance and a PNG beside it
bench-flash: install ## FlashAttention kernel vs SDPA and the naive path (GPU)
	$(BIN)/python scripts/bench.py flash

fig-scfa-runtime: install ## SCFA runtime figure: hash / QK-drop sweeps vs flash (GPU)
	$(BIN)/python scripts/bench.py scfa

fig-lightning: install ## Lightning-2 runtime and tokens/s vs N, vs SDPA flash (GPU)
	$(BIN)/python scripts/bench.py lightning

fig-flurka-seqlen: install ## FLuRKA Fig. 3: time vs N for every variant at the paper's configuration (GPU)
	$(BIN)/python scripts/bench.py flurka

# ---- paper tables: every row of conf/experiment/<table>/, then results/<table>/ (SCALE=smoke|mini|full)
table-wikitext103: install ## FLuRKA LM table: GPT with every causal variant (mini: WikiText-2)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-scfa: install ## SCFA table: hash / QK-drop sparse attention vs flash at long context
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-uptrain: install ## FLuRKA up-training: full-attention GPT swapped to each FLuRKA / kernel method vs scratch
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-time-budget: install ## FLuRKA v1: perplexity reached by full/flash/FLuRKA under one wall-clock budget
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

clean: ## remove run folders (not results/)
	rm -rf runs outputs multirun

.PHONY: help install test test-gpu lint demo smoke clean bench-flash fig-scfa-runtime fig-lightning fig-flurka-seqlen table-wikitext103 table-scfa table-uptrain table-time-budget
