# `make demo` and `make test` each set up .venv by themselves (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m node_dada.demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# On a machine with a CUDA GPU: CUDA tests, GPU speed, paper-size training steps
# (results/gpu/). The test suite runs the same script with --dry-run on the CPU.
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py --out results/gpu

lint: $(STAMP)
	$(PY) -m ruff check node_dada tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
