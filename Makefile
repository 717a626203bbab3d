# Every target creates or reuses .venv itself. TORCH_SPEC is what is installed when the venv has no
# torch yet: the CPU build 2.13.0 by default; GPU users: make TORCH_SPEC="torch==2.13.0" with their
# own index, or install torch into .venv before running make.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/d3lm demo --scale tiny experiment=demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/bench_precision.py
	$(PY) bench/bench_sampling.py --random-init --n 200 --presets random --steps 50
	$(PY) bench/sampler_oracle.py
	$(PY) bench/bench_metrics.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
