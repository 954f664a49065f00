# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The files the package is made of. The editable install is strict (setuptools' editable_mode=strict):
# a tree of links that IDEs and static analysers follow, agents/ and envs/ appearing as neuromod_rl.agents
# and neuromod_rl.envs. That tree lists files, so adding or removing one redoes the install.
FILES := $(VENV)/.package-files

.PHONY: run test install lint bench gpu-check clean FORCE

$(FILES): FORCE
	@mkdir -p $(VENV)
	@find neuromod_rl agents envs -type f \( -name '*.py' -o -name '*.c' -o -name '*.h' -o -name '*.yaml' \) \
		| sort > $@.new
	@cmp -s $@.new $@ || mv $@.new $@
	@rm -f $@.new

$(STAMP): pyproject.toml $(FILES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	# torch first, pinned: the CPU build on disk, never a multi-GB CUDA download.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]" --config-settings editable_mode=strict
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
