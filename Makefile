# vizlab — `make run` (main job on the embedded default model) · `make test` · `make bench`
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.vizlab-installed
ARGS   ?=

.PHONY: help setup sysdeps run test test-slow sweep bench bench-gpu lint clean clean-outputs

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv (torch 2.14.1 + vizlab editable with test extras)

run: setup  ## explain the embedded sample images with Grad-CAM on EfficientNet-Lite0 (ARGS="method=... model=...")
	$(PY) run.py $(ARGS)

sweep: setup  ## example sweep: every gradient/CAM method on the default model (the list comes from the registry)
	$(PY) run.py -m method=$$($(PY) -m vizlab.cli methods --sweep image cam,gradient) $(ARGS)

sysdeps:  ## system packages the tests need (Debian chromium for the HTML report test)
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: setup sysdeps  ## fast test suite (CPU, < 15 min on 2 cores)
	$(PY) -m pytest $(ARGS)

test-slow: setup sysdeps  ## only the slow tests
	$(PY) -m pytest -m slow $(ARGS)

bench: setup  ## benchmarks against peers and the physical limit (prints tables; run a script directly for options)
	$(PY) experiments/bench_gradient_methods.py
	$(PY) experiments/bench_metrics.py
	$(PY) experiments/bench_video_io.py
	$(PY) experiments/bench_perturbation.py
	$(PY) experiments/bench_hrcam.py
	$(PY) experiments/bench_pyramid.py
	$(PY) experiments/bench_featvis.py


bench-gpu: setup  ## every benchmark on CUDA, float32 and fast mode, within 10 min (ARGS="--compile", "--device cpu --tiny")
	$(PY) experiments/bench_gpu.py --device cuda $(ARGS)

lint: setup  ## ruff
	$(VENV)/bin/ruff check vizlab tests experiments run.py

clean-outputs:  ## delete Hydra run directories
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
