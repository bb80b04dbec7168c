#!/bin/bash
# Every GPU check and benchmark of this repo in ONE call on a GPU host without network, most
# valuable first, each step under its own time limit and all of them under one budget:
#   0. install the offline wheelhouse parts given (scripts/offline-gpu/install.sh) and this checkout
#   1. GPU correctness tests (tree ops bit-exact vs sgl-kernel, FP8 MoE and tree attention vs
#      SGLang's kernels in bf16 / fp8), pytest on 8 processes
#   2. kernel microbenchmarks vs SGLang's kernels, CUDA-graph timed, fractions of copy bandwidth;
#      the exact-penalty verify step vs the same step without penalties
#   3. one e2e pair (benchmarks/bench_e2e.py): Qwen2.5-7B shapes, dummy weights, baseline vs
#      EAGLE-3 (3 steps / topk 4 / 6 tokens, SGLANG_SIMULATE_ACC_LEN=3.3), B=1 and B=32
# Then benchmarks/gpu_session.py bundles everything into $OUT: gpu_session.json, gpu_session.md
# (commit both to benchmarks/results/) and gpu_session.tar.gz (logs, every JSON).
#
#   bash benchmarks/gpu_session.sh [--parts .dev-whl/part1 ...] [--budget 470] [--out DIR]
#   bash benchmarks/gpu_session.sh --dry-run [--out DIR]     # CPU: the same steps in dry-run form
#
# --budget: seconds for steps 1-3 together (default 470: one 10-minute device call holds the
# install too; 1800 for --dry-run). --dry-run: no install, pytest --collect-only, every script with --dry-run (Triton
# interpreter, tiny shapes), the e2e against a CPU server with tiny models; tests/test_gpu_session.py.
set -u
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
DRY=0; PARTS=(); BUDGET=; OUT=${OUT:-/tmp/gpu-session-out}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1; shift ;;
    --parts) shift; while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do PARTS+=("$1"); shift; done ;;
    --budget) BUDGET=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "gpu_session.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
SITE=${OFFLINE_GPU_SITE:-/tmp/site}
BUDGET=${BUDGET:-$( [ $DRY = 1 ] && echo 1800 || echo 470 )}  # a CPU dry run is slower, and no device time
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 GPU_SESSION_WORK=$WORK
if [ $DRY = 1 ]; then
  PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
  export TRITON_INTERPRET=1
else
  PY=${PYTHON:-python3}
  export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} TRITON_INTERPRET=0
fi
T0=$(date +%s)
printf 'step\texit\tseconds\tlimit\n' > "$WORK/steps.tsv"

step() {  # step NAME LIMIT CMD...: under min(LIMIT, what the budget has left); log in $WORK/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - T0) ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    printf '%s\tskipped\t0\t0\n' "$name" >> "$WORK/steps.tsv"; echo "$name: skipped, budget spent"; return
  fi
  local t=$(date +%s)
  timeout -k 15 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t ))" "$limit" >> "$WORK/steps.tsv"
  echo "$name: exit $rc after $(( $(date +%s) - t )) s (limit $limit s)"
  tail -n 3 "$WORK/$name.log"
}

cleanup() {  # servers a killed e2e step left behind (bench_e2e.py writes their process groups)
  [ -f "$WORK/servers.pgid" ] && while read -r g; do kill -9 -- "-$g" 2>/dev/null; done < "$WORK/servers.pgid"
}
trap cleanup EXIT

# 0. install (not counted in the budget: it runs before the checks)
if [ $DRY = 0 ]; then
  if [ ${#PARTS[@]} -gt 0 ]; then
    bash scripts/offline-gpu/install.sh "${PARTS[@]}" > "$WORK/install.log" 2>&1
  else
    bash scripts/offline-gpu/install.sh --checkout-only > "$WORK/install.log" 2>&1
  fi
  rc=$?; tail -n 5 "$WORK/install.log"
  printf 'install\t%s\t%s\t0\n' "$rc" "$(( $(date +%s) - T0 ))" >> "$WORK/steps.tsv"
  T0=$(date +%s)
  if [ $rc != 0 ] || [ ! -f "$SITE/.offline-gpu-installed" ]; then
    echo "install incomplete: no checks run"
    BUDGET=0
  fi
fi
"$PY" benchmarks/gpu_session.py probe --out "$WORK/env.json" > "$WORK/probe.log" 2>&1 || true
# which patches apply on the host's SGLang (and which tree ops run): cheap and telling
step doctor $( [ $DRY = 1 ] && echo 150 || echo 40 ) "$PY" -m sglang_eagle3_ext doctor

# 1. correctness on compiled Triton
TESTS="tests/test_tree_kernels_gpu.py tests/test_tree_kernels.py tests/test_fp8_moe.py tests/test_tree_attention.py tests/test_penalty_fixup.py"
if [ $DRY = 1 ]; then
  step gpu_tests 120 "$PY" -m pytest -q -p no:cacheprovider --collect-only $TESTS
else
  # -v: one line per test, so a run cut short by the limit still counts (the XML comes at the end)
  step gpu_tests 110 "$PY" -m pytest -v -p no:cacheprovider -n 8 --dist load --timeout 60 \
    --junitxml="$WORK/gpu_tests.xml" $TESTS
fi

# 2. speed vs SGLang's own kernels, same process, same GPU
if [ $DRY = 1 ]; then
  step bench_tree_ops 300 "$PY" benchmarks/bench_tree_ops.py --dry-run --batch 1 --topk 4 --out "$WORK/bench_tree_ops.json"
  step bench_fp8_moe 300 "$PY" benchmarks/bench_fp8_moe.py --dry-run --shapes tiny-shard192 --m 1 --out "$WORK/bench_fp8_moe.json"
  step bench_tree_attention 300 "$PY" benchmarks/bench_tree_attention.py --dry-run --shapes tiny-mla --batch 1 \
    --context 5 --out "$WORK/bench_tree_attention.json"
  step bench_penalty_fixup 300 "$PY" benchmarks/bench_penalty_fixup.py --dry-run --batch 1 --topk 4 \
    --out "$WORK/bench_penalty_fixup.json"
else
  step bench_tree_ops 45 "$PY" benchmarks/bench_tree_ops.py --batch 1 8 32 --iters 30 --out "$WORK/bench_tree_ops.json"
  step bench_fp8_moe 60 "$PY" benchmarks/bench_fp8_moe.py --shapes glm47-tp8 glm51-tp8 --m 1 8 32 128 --iters 40 \
    --out "$WORK/bench_fp8_moe.json"
  step bench_tree_attention 50 "$PY" benchmarks/bench_tree_attention.py --context 1024 4096 16384 --batch 1 8 \
    --draft 6 --iters 30 --out "$WORK/bench_tree_attention.json"
  step bench_penalty_fixup 30 "$PY" benchmarks/bench_penalty_fixup.py --batch 1 32 --topk 1 4 --iters 30 \
    --out "$WORK/bench_penalty_fixup.json"
fi

# 3. one e2e pair
if [ $DRY = 1 ]; then
  step bench_e2e 900 "$PY" benchmarks/bench_e2e.py --dry-run --boot-timeout 800 --out "$WORK/bench_e2e.json"
else
  step bench_e2e 300 "$PY" benchmarks/bench_e2e.py --boot-timeout 160 --out "$WORK/bench_e2e.json"
fi

cleanup
"$PY" benchmarks/gpu_session.py bundle "$WORK" "$OUT" --elapsed $(( $(date +%s) - T0 )) --budget "$BUDGET" \
  $( [ $DRY = 1 ] && echo --dry-run )
rc=$?
echo "session: $(( $(date +%s) - T0 )) s; results in $OUT"
exit $rc
