#!/bin/bash
# Every GPU check and kernel benchmark of this repo in ONE device call (device time is scarce:
# 15 minutes a session). Run from the repo root on the GPU machine once SGLang is installed there
# (docs/gpu.md). Most important first; each step has its own time
# limit so a slow or hanging one cannot eat the rest. Writes $OUT/gpu_tests.log + .xml and
# $OUT/bench_*.json / .log; copy the JSON into benchmarks/results/ and commit it.
# usage: bash benchmarks/gpu_session.sh [STEP_SECONDS=120]
set -u
LIMIT=${1:-120}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TRITON_INTERPRET=0
T0=$(date +%s)
python3 -m pip install -q --no-deps --no-build-isolation --target /tmp/site . 2>&1 | grep -v -i warning
python3 -c "import sglang, torch, triton, sglang_eagle3_ext as e; print('sglang', sglang.__version__, \
'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

step() {  # step NAME CMD...: run under the time limit, log to $OUT/NAME.log, say how it ended
  local name=$1; shift
  local t=$(date +%s)
  timeout -k 10 "$LIMIT" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - t )) s"; tail -3 "$OUT/$name.log"
}

# 1. correctness in bf16/fp8 on compiled Triton: tree kernels (vs sgl-kernel), FP8 MoE, tree attention
step gpu_tests python3 -m pytest -q -p no:cacheprovider -x --junitxml="$OUT/gpu_tests.xml" \
  tests/test_tree_kernels_gpu.py tests/test_tree_kernels.py tests/test_fp8_moe.py tests/test_tree_attention.py
# 2. speed vs SGLang's own kernels, same process, same GPU
step bench_tree_ops python3 benchmarks/bench_tree_ops.py --out "$OUT/bench_tree_ops.json"
step bench_fp8_moe python3 benchmarks/bench_fp8_moe.py --out "$OUT/bench_fp8_moe.json"
step bench_tree_attention python3 benchmarks/bench_tree_attention.py --out "$OUT/bench_tree_attention.json"
echo "total $(( $(date +%s) - T0 )) s"
