#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): run it once in a session lent a GPU,
# with a time limit that leaves room to rerun it; it writes docs/GPU_RESULTS.md.
#   bash benchmarks/gpu_check.sh                       # d16, d20, d24, d30 in bf16 on CUDA
#   bash benchmarks/gpu_check.sh --device cpu --smoke  # the CPU smoke mode the tests run
set -euo pipefail
cd "$(dirname "$0")/.."
# the project's venv when there is one (a CPU machine), else the machine's Python with CUDA torch
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
