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
	@find neuromod_rl agents envs configs -type f \( -name '*.py' -o -name '*.c' -o -name '*.h' -o -name '*.yaml' -o -name '*.yml' \) \
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

# The oldest releases pyproject.toml claims: a venv of its own with stable-baselines3, sb3-contrib and
# Gymnasium at their declared floors (scripts/min_constraints.py reads them, so a changed floor is tested),
# no extras, and the tests that lean hardest on those libraries (policies, algorithms and their save/load,
# RecurrentPPO, MuJoCo tasks) plus the missing-extra errors, against real missing packages.
VENV_MIN := .venv-min
MIN_TESTS := tests/agents/test_policies.py tests/agents/test_algorithms.py tests/agents/test_recurrent_ppo_parity.py \
	tests/agents/test_offpolicy_algorithms.py tests/agents/test_former_modules.py tests/envs/test_mujoco.py \
	tests/test_extras.py tests/test_version.py
.PHONY: test-min
test-min:
	test -x $(VENV_MIN)/bin/python || $(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(VENV_MIN)/bin/python -m pip install -q torch==2.13.0
	$(VENV_MIN)/bin/python scripts/min_constraints.py > $(VENV_MIN)/constraints.txt
	$(VENV_MIN)/bin/python -m pip install -q -c $(VENV_MIN)/constraints.txt -e . pytest pytest-timeout
	$(VENV_MIN)/bin/python -m pip list 2>/dev/null | grep -iE '^(stable.baselines3|sb3.contrib|gymnasium|torch) '
	WANDB_MODE=offline WANDB_SILENT=true RAY_USAGE_STATS_ENABLED=0 $(VENV_MIN)/bin/python -m pytest -q $(MIN_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(VENV)/bin/neuromod-rl bench core

# On a machine with an NVIDIA GPU: CUDA tests of the triton backend + the GPU benchmark (docs/gpu.md).
gpu-check: $(STAMP)
	PY=$(PY) bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) $(VENV_MIN) build site *.egg-info

# The documentation site (mkdocs.yml) into site/, offline. --strict: a broken link or anchor, a page missing
# from the nav or a docstring that does not parse fails it.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
