#!/usr/bin/env bash
# Install real SGLang (pinned) + this plugin into ./.venv on a machine without a GPU.
# Idempotent: a second run only re-installs the plugin. ~2-3 minutes from nothing, plus ~1 minute
# for the other SGLang releases the release smoke runs (scripts/install_release.py).
set -euo pipefail
cd "$(dirname "$0")/.."
SGLANG_VERSION=0.5.23   # the newest SGLang that installs here (pins torch 2.14.1)
PY=${PYTHON:-python3}
# pip's noise here: ignored local index paths, and sglang's CUDA-only requirements we skip on purpose.
quiet() {
  local log rc=0; log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  grep -v -e "^WARNING: Location" -e "which is not installed" -e "dependency resolver does not" "$log" || true
  rm -f "$log"; return $rc
}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import sglang, torch, torchvision, xdist" 2>/dev/null; then
  quiet .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
  quiet .venv/bin/python -m pip install -q --no-deps "sglang==${SGLANG_VERSION}"
  quiet .venv/bin/python -m pip install -q -r requirements-cpu.txt
fi
quiet .venv/bin/python -m pip install -q -e .
# The GPU machine's Triton, beside the venv's, for the ahead-of-time sm_90a compile check
# (tests/test_kernels_compile.py, benchmarks/compile_report.py); ~30 s, not imported otherwise.
[ -d .triton-3.6.0/triton ] || quiet .venv/bin/python -m pip install -q --no-deps --target .triton-3.6.0 triton==3.6.0
.venv/bin/python -c "import sglang, sglang_eagle3_ext; print('installed: sglang', sglang.__version__, '+ sglang-eagle3-ext', sglang_eagle3_ext.__version__)"
# The other SGLang releases tests/test_releases.py smokes, each a small layer over .venv (not a venv).
.venv/bin/python scripts/install_release.py
