# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install lint bench gpu-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	# torch first, pinned: the CPU build on disk, never a multi-GB CUDA download.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	MUJOCO_GL=$${MUJOCO_GL:-egl} $(VENV)/bin/neuromod-rl train --report

test: $(STAMP)
	WANDB_MODE=offline WANDB_SILENT=true RAY_USAGE_STATS_ENABLED=0 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/neuromod-rl bench core

# On a machine with an NVIDIA GPU: CUDA tests of the triton backend + the GPU benchmark (docs/gpu.md).
gpu-check: $(STAMP)
	PY=$(PY) bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info
