#!/usr/bin/env bash
# One-step GPU check of the sequence engine (docs/gpu.md): run by `make gpu-check` on a machine with
# an NVIDIA GPU. Installs what is missing into the project's venv (a CUDA build of torch, triton),
# runs the CUDA tests with compiled Triton kernels, then the GPU benchmark, which prints the table,
# the ratios and the targets, and writes benchmarks/results/core_gpu.json, then a short end-to-end
# training benchmark (SB3 VecEnv path vs the batched device-resident path, CPU and CUDA rows), which
# writes benchmarks/results/pipeline.json.
#
# Environment:
#   PY                  the venv's python (default .venv/bin/python; `make gpu-check` creates the venv)
#   TORCH_INSTALL_ARGS  extra pip arguments for installing a CUDA build of torch when the venv has a
#                       CPU-only one (e.g. an --index-url of a CUDA wheel index)
#   BENCH_ARGS          extra arguments for `neuromod-rl bench core --device cuda` (e.g. --quick)
#   PIPELINE_ARGS       arguments for `neuromod-rl bench pipeline` (default: a short budget, 16 envs,
#                       4000 timed steps per row; e.g. --smoke, or --envs 16 256 --steps 50000)
#   CUE_GPU             1: finally run `neuromod-rl reproduce cue --scale gpu` (the cue task's three
#                       Backpropamine variants on the batched path, 120 s of training each, about 7 min
#                       in all), writing docs/results/cue-gpu/cue.md (default 0: skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    # degrade to the CPU rows, so that the script is checked end to end before a GPU call is spent on it
    echo "gpu-check: no NVIDIA GPU found (nvidia-smi is missing or sees no device); CPU rows only" >&2
    # shellcheck disable=SC2086
    "$PY" -m neuromod_rl.cli bench pipeline --devices cpu ${PIPELINE_ARGS:---smoke}
    echo "gpu-check: the GPU rows need a machine with an NVIDIA GPU" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

has_cuda_torch() { "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; }
if ! has_cuda_torch; then
    version=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
    echo "gpu-check: the venv's torch $version cannot see the GPU; installing a CUDA build of torch $version"
    # shellcheck disable=SC2086
    "$PY" -m pip install --force-reinstall ${TORCH_INSTALL_ARGS:-} "torch==$version"
    if ! has_cuda_torch; then
        echo "gpu-check: torch still sees no GPU; install a CUDA build by hand, e.g." >&2
        echo "  TORCH_INSTALL_ARGS='--index-url <a CUDA wheel index>' make gpu-check" >&2
        exit 2
    fi
fi
"$PY" -m pip install --quiet -e ".[gpu]"
"$PY" -c "import torch, triton; print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}')"

echo "== CUDA tests (compiled Triton kernels, plastic RNN and LSTM; the fused torch-op path for every cell and rule; PlasticPPO on the GPU)"
TRITON_INTERPRET=0 "$PY" -m pytest -q -p no:cacheprovider tests/plasticity/test_triton.py tests/plasticity/test_triton_lstm.py -k "cuda"
"$PY" -m pytest -q -p no:cacheprovider tests/plasticity/test_fused.py -k "cuda" tests/agents/test_cuda.py \
    tests/agents/test_device_rollouts.py tests/envs/test_batched.py

echo "== GPU benchmark"
# shellcheck disable=SC2086
"$PY" -m neuromod_rl.cli bench core --device cuda ${BENCH_ARGS:-}

echo "== End-to-end training: SB3 VecEnv path vs batched device-resident path (rows torch cannot run on CUDA say so)"
# shellcheck disable=SC2086
"$PY" -m neuromod_rl.cli bench pipeline --devices cpu cuda ${PIPELINE_ARGS:---envs 16 --steps 4000}

if [ "${CUE_GPU:-0}" = "1" ]; then
    echo "== Cue task on the batched path: three Backpropamine variants, a wall-clock budget each"
    "$PY" -m neuromod_rl.cli reproduce cue --scale gpu --out docs/results/cue-gpu
fi
