# Every target creates or reuses .venv itself. TORCH_SPEC is what is installed when the venv has no
# torch yet: the CPU build 2.13.0 by default; GPU users: make TORCH_SPEC="torch==2.13.0" with their
# own index, or install torch into .venv before running make.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench

# Ablations: SCALE picks experiments/scales/<SCALE>.yaml, SEEDS=N overrides the grids' 3 seeds,
# SEI_WEIGHTS=FILE adds SFID (fd_sei) to every point, SHARD=I/N runs only training points I, I+N, ...
# (parallel workers on one grid). Each target trains what is missing, samples, evaluates, writes
# results/ablation-<grid>-<SCALE>.csv and rebuilds reports/<SCALE>/<grid>.*.
SCALE ?= tiny
SEEDS ?=
SEI_WEIGHTS ?=
SHARD ?=
ABLATE = $(VENV)/bin/d3lm ablation --scale $(SCALE) $(if $(SEEDS),--seeds $(SEEDS)) \
	$(if $(SEI_WEIGHTS),--sei-weights $(SEI_WEIGHTS)) $(if $(SHARD),--shard $(SHARD))
NOTEBOOK = SCALE=$(SCALE) $(PY) analysis/$(1).py
# Every grid file: a new experiments/ablations/NAME.yaml gets
# ablation-NAME and a place in tables and figures (with its analysis/NAME.py) unchanged.
GRIDS := $(sort $(basename $(notdir $(wildcard experiments/ablations/*.yaml))))
ABLATIONS := $(GRIDS:%=ablation-%)

.PHONY: venv demo test lint bench learnability clean tables figures table-main \
	table-understanding $(ABLATIONS)

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,analysis]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/d3lm demo --scale tiny experiment=demo

# Two passes: the whole suite with trainer.precision=auto as this machine resolves it, then the
# tests that resolved it again under the outcome this machine's probe does not pick
# (tests/conftest.py, --auto-precision), so a CPU with and one without native bf16 both pass.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q
	$(PY) -m pytest -q --auto-precision=other

# Ruff, then the import contracts of pyproject.toml ([tool.importlinter]: the layers of
# docs/design.md; the graph builds in under a second, so no cache folder is kept).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	touch $(BENCH_STAMP)

# Speed figures (about 30 CPU-minutes here) and the oracle's seed spread (five oracles of about
# two CPU-minutes each, cached): the training, sampling-speed-up and oracle-seeds sections of
# BENCHMARKS.md are rewritten in place (between their <!-- bench:... --> markers); GPU rows come
# from `bash bench/gpu.sh OUT` on a GPU machine.
bench: $(BENCH_STAMP)
	$(PY) bench/bench_training.py --scaling --figure reports/bench/training-cost.png \
		--write BENCHMARKS.md --section training-cpu
	$(PY) bench/bench_sampling_speedup.py --write BENCHMARKS.md
	$(PY) bench/bench_fused_qkv.py --write BENCHMARKS.md
	$(PY) bench/bench_precision.py
	$(PY) bench/bench_sampling.py --random-init --n 200 --presets random --steps 50
	$(PY) bench/sampler_oracle.py
	$(PY) bench/bench_metrics.py
	$(PY) bench/oracle_seeds.py --write BENCHMARKS.md

# Attained vs attainable bits/nt on synthetic DNA of known entropy (about 40 CPU-minutes; resumable).
learnability: $(STAMP)
	$(PY) bench/learnability.py --tasks copy --tokenizers nt6mer kmer:3 --variants ntv2 tied nuc tied_nuc
	$(PY) bench/learnability.py --tasks markov motifs --tokenizers nt6mer --variants ntv2 tied_nuc

$(ABLATIONS): ablation-%: $(STAMP)
	$(ABLATE) $*
	$(call NOTEBOOK,$*)

# The main table under the name the paper-table targets had before every grid got ablation-<grid>
table-main: ablation-main

# Pretrain diffusion and MLM models at equal compute, fine-tune them and a random init on every
# task (experiments/understanding.yaml), then the MCC table and figure.
table-understanding: $(STAMP)
	$(VENV)/bin/d3lm understanding --scale $(SCALE) $(if $(SEEDS),--seeds $(SEEDS)) \
		$(if $(SHARD),--shard $(SHARD))
	$(call NOTEBOOK,understanding)

tables: $(ABLATIONS) table-understanding

# Re-runs every analysis notebook whose results exist (they read results/ only), then the paper
# claims table (reports/<SCALE>/claims.md and, at tiny, the README's copy), then the index page of
# every table, reports/<SCALE>/README.md.
figures: $(STAMP)
	@for nb in $(GRIDS) understanding; do \
	  csv=$${D3LM_RESULTS:-results}/ablation-$$nb-$(SCALE).csv; \
	  [ $$nb = understanding ] && csv=$${D3LM_RESULTS:-results}/understanding-$(SCALE).csv; \
	  if [ -f $$csv ]; then echo "analysis/$$nb.py"; $(call NOTEBOOK,$$nb) > /dev/null || exit 1; \
	  else echo "skip analysis/$$nb.py: no $$csv yet"; fi; \
	done
	@echo "analysis/claims.py"; $(call NOTEBOOK,claims) > /dev/null
	@echo "analysis/reports.py"; $(call NOTEBOOK,reports) > /dev/null

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
