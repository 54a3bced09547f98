# flurka — `make help` lists the targets. Everything runs from a local virtual environment (.venv).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= smoke
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

# colour only on a terminal: piped or redirected (`make help | less`, CI logs) the list is plain text
help: ## list the targets
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / \
	  {printf "  %s%-24s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

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

# smoke runs are throwaway checks: each `make smoke` starts from an empty $(RUNS)/smoke, so it can run again
RUNS ?= runs
SMOKE_ATTENTIONS ?= full flash performer linear eva flurka_performer flurka_rnn flurka_eva scfa_qk scfa_hash lightning
SMOKE_ARGS ?=
smoke: install ## one tiny training run per attention variant on CPU (repeatable: starts from an empty runs/smoke)
	rm -rf $(RUNS)/smoke
	for a in $(SMOKE_ATTENTIONS); do \
	  $(BIN)/python scripts/train.py scale=smoke logger=none trainer.progress=false group=smoke runs_root=$(RUNS) \
	    attention=$$a $(SMOKE_ARGS) || exit 1; \
	done

# ---- speed figures (GPU): each writes results/speed/<suite>.json with provenance and a PNG beside it; the FLuRKA
# figures write results/flurka_speed/<figure>/ (results.json, results.csv, results.png, table.md). Each rewrites its
# JSON after every measured point ("complete": false until the sweep ends): a run cut short keeps what it measured
bench-flash: install ## FlashAttention kernel vs SDPA cuDNN, SDPA flash (FA2) and the naive path, one run (GPU)
	$(BIN)/python scripts/bench.py flash

fig-scfa-runtime: install ## SCFA runtime figure: hash / QK-drop sweeps vs flash (GPU)
	$(BIN)/python scripts/bench.py scfa

fig-lightning: install ## Lightning-2 runtime and tokens/s vs N, vs SDPA flash (GPU)
	$(BIN)/python scripts/bench.py lightning

bench-train: install ## training-step tokens/s, MFU, peak memory per attention variant, GPT-2 small, N 1k-16k (GPU)
	$(BIN)/python scripts/bench.py train

fig-flurka-seqlen: install ## FLuRKA Fig. 3: time vs N for every variant at the paper's configuration (GPU)
	$(BIN)/python scripts/bench.py flurka

fig-flurka-ablation: install ## FLuRKA Fig. 4: d_k x d_m grid, speedups over full/low-rank/kernel, measured + FLOP model (GPU)
	$(BIN)/python scripts/bench.py flurka_ablation

fig-flurka-vs-flash: install ## FLuRKA Fig. 5: FLuRKA's speedup over FlashAttention (Triton and SDPA), d_h 64/128 (GPU)
	$(BIN)/python scripts/bench.py flurka_vs_flash

fig-flurka-rank: install ## FLuRKA Fig. 1: spectra of a trained Performer's kernel matrix; FLuRKA error vs d_k, m (GPU)
	$(BIN)/python scripts/bench.py flurka_rank

scaling: install ## 1 vs 2 GPUs: DDP and FSDP loss curves, scaling, peak memory, crash + resume -> results/distributed/
	$(BIN)/python scripts/bench.py distributed

# ---- paper tables: every row of conf/experiment/<table>/, then results/<table>/ (SCALE=smoke|mini|full)
table-wikitext103: install ## FLuRKA LM table: GPT with every causal variant (mini: WikiText-2)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-scfa: install ## SCFA table: hash / QK-drop vs flash, GPT at 8k tokens (mini: WikiText-2; full: OpenWebText2)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-scfa-mnist: install ## SCFA table on autoregressive MNIST (784 pixels): bits/dim and speed vs flash
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-scfa-shakespeare: install ## SCFA table, char-level LM at 8k bytes: bits/char, speed (mini: tiny-shakespeare; full: enwik8)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-uptrain: install ## FLuRKA up-training: full-attention GPT swapped to each FLuRKA / kernel method vs scratch
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-time-budget: install ## FLuRKA v1: perplexity reached by full/flash/FLuRKA under one wall-clock budget
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-glue: install ## FLuRKA GLUE: BERT pre-trained (MLM) per variant, fine-tuned per task (mini: 5 tasks)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-lra: install ## LRA: encoder classifiers per variant (mini: ListOps + sequential MNIST; full: the 5 tasks)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-wmt: install ## FLuRKA WMT: seq2seq with each variant in the encoder, BLEU (mini: Multi30k en-de, en-fr)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

table-imagenet: install ## FLuRKA ImageNet: ViT per variant, accuracy (mini: MNIST; full: ImageNet-1k)
	$(BIN)/python scripts/run_table.py $@ --scale $(SCALE)

# ---- the GPU machine of the device tool: stage once here, then one call runs scripts/gpu_session.sh
# A call carries at most 64 MiB: wheels 33 MiB + the tree ~5 MiB leave ~32 MiB of data, so name what the call
# needs (MiB: wikitext-2 13, glue 11, mnist 11, multi30k 3): DEVICE_DATA="mnist multi30k" for table-imagenet and
# table-wmt, "wikitext-2 glue" for table-glue (the default), "mnist" for table-lra.
DEVICE_DATA ?= wikitext-2 glue
# fla-core: the Lightning bench's peer (issue 15), carried as a wheel
FLA_CORE_VERSION ?= 0.6.0
device-stage: ## stage .device/ (wheels the GPU image lacks + DEVICE_DATA datasets) for the device tool
	rm -rf .device/data
	../shared/device/stage.sh $(DEVICE_DATA)
	@# fla-core (pure-Python Triton kernels): the Lightning bench's peer, chunk_simple_gla; 1 MB, pinned
	$(BIN)/python -m pip download -q --no-deps --dest .device/wheels fla-core==$(FLA_CORE_VERSION) \
		|| echo "fla-core $(FLA_CORE_VERSION) not fetched: the Lightning bench's fla rows will say unavailable"
	@# sacrebleu (table-wmt's BLEU) and its needs, built for the GPU image's Python 3.12: the image lacks them
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--abi cp312 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --dest .device/wheels \
		sacrebleu==2.6.0 portalocker==4.4.2 tabulate==0.10.0 colorama==0.4.6 regex==2026.12.2 lxml==6.2.1
	@# the GPU machine's copy of .git is the session's starting one: record the commit the results come from
	@echo "$$(git rev-parse HEAD)$$(git status --porcelain --untracked-files=no | grep -q . && echo +dirty)" > .device/commit
	@echo "staged for commit $$(cat .device/commit) (stage again after committing)"

notebook: install ## run notebooks/results.ipynb on the committed results, outputs saved in place (reads on GitHub)
	$(BIN)/python scripts/execute_notebook.py notebooks/results.ipynb

clean: ## remove run folders (not results/)
	rm -rf runs outputs multirun

.PHONY: help install test test-gpu lint demo smoke notebook clean bench-flash bench-train fig-scfa-runtime fig-lightning fig-flurka-seqlen table-wikitext103 table-scfa table-uptrain table-time-budget table-glue table-lra table-wmt table-imagenet table-scfa-mnist table-scfa-shakespeare device-stage \
	fig-flurka-ablation fig-flurka-vs-flash fig-flurka-rank scaling
