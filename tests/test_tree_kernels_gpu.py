"""Our Triton EAGLE tree ops vs SGLang's own CUDA ops, on the GPU.

    TRITON_INTERPRET=0 python -m pytest -q tests/test_tree_kernels_gpu.py

(tests/conftest.py turns the Triton interpreter on by default, for CPU runs.)
SGLang's ops are feature-detected as in benchmarks/bench_tree_ops.py:
``sglang.kernels.ops.speculative.tree`` / ``.sampling`` (JIT CUDA, SGLang 0.5.23)
or ``sgl_kernel`` (SGLang 0.5.16); a test skips, saying why, where none imports.
Random trees come from EAGLE's own draft-loop selection (the benchmark's
generator, shared with tests/test_tree_kernels.py's).

Build and greedy verify must be bit-exact. Sampling: SGLang passes fp32
target_probs (logits are cast to fp32 before the softmax) and the CUDA op only
takes fp32; ours also takes bf16, checked here against the CUDA op on the same
values upcast (exact). Accept paths, predicts and draft_probs must be bit-exact;
the final token may differ only on a rounding tie of the residual sums, except
for dyadic probabilities whose sums are exact in any order: there it must match.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# The benchmark imports its sibling bench_common, as it does when run as a script.
sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("bench_tree_ops", ROOT / "benchmarks" / "bench_tree_ops.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                       reason="needs compiled Triton: run with TRITON_INTERPRET=0"),
]

DEVICE = "cuda"
VOCAB = bench.QWEN_VOCAB
BUILD, VERIFY, SAMPLE = bench.OPS

# (topk, steps, draft tokens): topk 1..8, chains to 64-token trees
SHAPES = [(1, 3, 4), (1, 5, 6), (2, 3, 6), (4, 3, 6), (4, 5, 8), (4, 4, 16), (8, 3, 8), (8, 5, 32), (8, 8, 64)]
BATCHES = [1, 7, 32, 64]
SAMPLING_SHAPES = [(1, 3, 4), (4, 3, 6), (4, 5, 8), (8, 5, 32)]
SAMPLING_BATCHES = [1, 7, 64]


@pytest.fixture(scope="module")
def upstream():
    return bench.upstream_ops()


def cuda_op(upstream, name):
    found, why = upstream
    if name not in found:
        pytest.skip(f"SGLang's CUDA {name} is not importable here ({why or 'not found'})")
    return found[name][0]


def ours(name):
    return getattr(bench.our_kernels(), name)


def case_for(op, topk, steps, n, bs, seed, **kw):
    return bench.make_case(op, bs, topk, steps, n, device=DEVICE, vocab=VOCAB, seq_range=(1, 4096),
                           seed=seed, **kw)


def run(fn, case, **kw):
    out = bench.fresh_outputs(case, probs_dtype=kw.pop("probs_dtype", None))
    bench.caller(fn, case, out, **kw)()
    return out


@pytest.mark.parametrize("mode", [0, 1, 2], ids=["full", "qlen", "bitpack"])
@pytest.mark.parametrize("bs", BATCHES)
@pytest.mark.parametrize("topk,steps,n", SHAPES)
def test_build_matches_cuda(upstream, topk, steps, n, bs, mode):
    theirs = cuda_op(upstream, BUILD)
    if mode == 2 and n > 32:
        pytest.skip("bit-packed masks hold at most 32 tokens")
    case = case_for(BUILD, topk, steps, n, bs, seed=1000 * topk + 10 * n + bs, mask_mode=mode)
    mine = run(ours(BUILD), case)
    assert bench.compare(case, mine, run(theirs, case)) == ([], 0)


@pytest.mark.parametrize("bs", BATCHES)
@pytest.mark.parametrize("topk,steps,n", SHAPES)
def test_verify_greedy_matches_cuda(upstream, topk, steps, n, bs):
    theirs = cuda_op(upstream, VERIFY)
    case = case_for(VERIFY, topk, steps, n, bs, seed=2000 * topk + 10 * n + bs)
    mine = run(ours(VERIFY), case)
    assert bench.compare(case, mine, run(theirs, case)) == ([], 0)
    if bs >= 32:  # the check has power: the targets mostly follow the trees
        assert float(mine["accept_num"].float().mean()) > 0.5


@pytest.mark.parametrize("probs", ["softmax", "dyadic"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("bs", SAMPLING_BATCHES)
@pytest.mark.parametrize("topk,steps,n", SAMPLING_SHAPES)
def test_sampling_matches_cuda(upstream, topk, steps, n, bs, dtype, probs):
    theirs = cuda_op(upstream, SAMPLE)
    case = case_for(SAMPLE, topk, steps, n, bs, seed=3000 * topk + 10 * n + bs, probs=probs, probs_dtype=dtype)
    mine = run(ours(SAMPLE), case)  # bf16 probs and bf16 draft_probs, as given
    # the CUDA op takes fp32 only: the same values upcast (exact)
    other = run(theirs, case, cast_probs=torch.float32, probs_dtype=torch.float32)
    bad, ties = bench.compare(case, mine, other, exact_final=probs == "dyadic")
    assert bad == [], f"differs: {bad}"
    assert ties <= max(1, bs // 16)  # ties are rounding accidents: rare
    if bs == 64:  # the check has power: walks went deep, and drafts were rejected
        assert float(mine["accept_num"].float().mean()) > 0.5
        assert int(mine["draft_probs"].count_nonzero()) > 0


@pytest.mark.parametrize("bs", SAMPLING_BATCHES)
@pytest.mark.parametrize("topk,steps,n", SAMPLING_SHAPES)
def test_sampling_relaxed_thresholds_match_cuda(upstream, topk, steps, n, bs):
    # threshold_acc < 1 divides `acc / threshold_acc`; a power of two keeps that
    # exact also in a CUDA build with fast (approximate) division
    theirs = cuda_op(upstream, SAMPLE)
    case = case_for(SAMPLE, topk, steps, n, bs, seed=4000 * topk + 10 * n + bs)
    kw = dict(threshold_single=0.3, threshold_acc=0.5)
    bad, _ = bench.compare(case, run(ours(SAMPLE), case, **kw), run(theirs, case, **kw))
    assert bad == [], f"differs: {bad}"


@pytest.mark.parametrize("op", bench.OPS)
def test_cuda_graph_replay_matches_eager(op):
    """SGLang may capture these ops in CUDA graphs: replay must equal eager."""
    case = case_for(op, 4, 5, 8, 32, seed=5)
    eager = run(ours(op), case)
    out = bench.fresh_outputs(case)
    call = bench.caller(ours(op), case, out)
    call()  # compile before capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    for k, v in bench.fresh_outputs(case).items():
        out[k].copy_(v)  # forget the warm-up call's results
    graph.replay()
    torch.cuda.synchronize()
    assert bench.compare(case, eager, out, exact_final=True) == ([], 0)
