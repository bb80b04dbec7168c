"""What the ahead-of-time compile check compiles: every Triton kernel of kernels/, launched through
its real launcher at the decode / verify shapes of the five target models of launch/.

REGISTRY maps a kernel family to a function yielding (labels, launch) pairs: `launch()` calls the
public launcher (the one SGLang's patched paths call) on CPU tensors shaped and typed as SGLang
passes them; benchmarks/kernel_compile.py intercepts the Triton launches it makes and compiles
each distinct one (Triton's own specialization: constexprs, dtypes, 1-valued and 16-divisible
ints and pointers). So the configs compiled are exactly the ones the launch code picks. To add a
kernel, add one entry. Tensors are torch.empty (never written: nothing runs).

Decode / verify shapes: per preset (launch/<name>.json) and variant, batch sizes 1..B of that
variant (a batch shrinks as requests finish; CUDA graphs pad to sizes in the same range), M = B
tokens in a plain decode step and B x draft tokens in a verify step; TP from the preset.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import our_kernels  # noqa: E402

GPU = ("NVIDIA H200", 132)  # name, SMs: what fp8_moe_config's heuristic sees (H100 SXM: also 132)

# Per-model shapes the presets do not carry (public config.json files). attn: ("gqa", q heads,
# kv heads, head dim) or ("mla", heads, kv_lora_rank, rope dim); None: SGLang serves it with a
# backend our tree attention does not hook (GLM-5.1: DSA -> the NSA backend). moe: FP8 block
# MoE (128x128 scales), shared experts counted separately.
MODELS = {
    "qwen25-7b": dict(vocab=152064, attn=("gqa", 28, 4, 128)),
    "llama31-8b": dict(vocab=128256, attn=("gqa", 32, 8, 128)),
    "glm47-flash": dict(vocab=154880, attn=("mla", 20, 512, 64)),  # bf16 MoE: not ours
    "glm47-fp8": dict(vocab=151552, attn=("gqa", 96, 8, 128),
                      moe=dict(E=160, topk=8, hidden=5120, inter=1536, shared=1)),
    "glm51": dict(vocab=154880, attn=None, moe=dict(E=256, topk=8, hidden=6144, inter=2048, shared=1)),
}
BLOCK = 128


def presets():
    """[(model, variant, tp, topk, steps, draft tokens, max batch)] from launch/*.json."""
    out = []
    for path in sorted((ROOT / "launch").glob("*.json")):
        data = json.loads(path.read_text())
        if data["name"] not in MODELS:
            raise KeyError(f"{path}: add the shapes of {data['name']} to MODELS in {__file__}")
        for variant, v in data["variants"].items():
            args = dict(data["server_args"], **v["server_args"])
            out.append((data["name"], variant, int(args.get("tp_size", 1)), args["speculative_eagle_topk"],
                        args["speculative_num_steps"], args["speculative_num_draft_tokens"], v["batch_size"]))
    return out


def _batches(max_b):
    return range(1, max_b + 1)


# ------------------------------------------------------------------ tree ops


def tree_ops():
    """build / greedy verify / sampling: SGLang's GPU path (FULL_MASK; eagle_utils picks
    QLEN_ONLY on CPU only), fp32 target probabilities (SGLang softmaxes in fp32)."""
    import bench_tree_ops as bench

    k = our_kernels()
    seen = set()
    for model, variant, _, topk, steps, n, max_b in presets():
        vocab = MODELS[model]["vocab"]
        # batch only moves the views of SGLang's [3, bs, n] link buffer (alignment): 1..8 covers it
        for bs in sorted({*range(1, min(max_b, 8) + 1), max_b}):
            if (topk, steps, n, bs, vocab) in seen:
                continue
            seen.add((topk, steps, n, bs, vocab))
            label = dict(model=model, variant=variant, topk=topk, steps=steps, draft=n, batch=bs)
            build = bench.make_case("build_tree_kernel_efficient", bs, topk, steps, n, device="cpu",
                                    vocab=vocab, seq_range=(1, 4096), seed=bs, mask_mode=bench.FULL_MASK)
            yield dict(label, op="build"), _call(bench, k.build_tree_kernel_efficient, build)
            greedy = bench.make_case("verify_tree_greedy", bs, topk, steps, n, device="cpu", vocab=vocab,
                                     seq_range=(1, 4096), seed=bs)
            yield dict(label, op="verify"), _call(bench, k.verify_tree_greedy, greedy)
            sample = dict(greedy, op="tree_speculative_sampling_target_only",
                          coins=torch.empty(bs, n), final_coins=torch.empty(bs),
                          target_probs=torch.empty(bs, n, vocab))
            yield dict(label, op="sample"), _call(bench, k.tree_speculative_sampling_target_only, sample)


def _call(bench, fn, case):
    out = bench.fresh_outputs(case)
    return bench.caller(fn, case, out)


# ------------------------------------------------------------------ FP8 MoE


def fp8_moe_shapes():
    """[(model, variant, tp, M set)] for the FP8 MoE targets: decode M = B, verify M = B x n."""
    out = {}
    for model, variant, tp, _, _, n, max_b in presets():
        if "moe" in MODELS[model]:
            ms = out.setdefault((model, tp), {})
            for b in _batches(max_b):
                ms.setdefault(b, set()).add("decode")
                ms.setdefault(b * n, set()).add(f"verify x{n}")
    return out


def fp8_moe():
    """fused_experts_fp8 as the fp8_moe_shards patch calls it (bf16 hidden states, fp32 top-k
    weights, int32 ids; blocks re-gridded to g = gcd(128, shard)), with SGLang's shared-expert
    fusion (one more expert, top-k + 1) and without it (then an unaligned shared expert runs
    fp8_block_linear)."""
    from sglang_eagle3_ext.kernels import fp8_moe as moe
    from sglang_eagle3_ext.kernels.fp8_moe_config import for_device

    fp8 = torch.float8_e4m3fn
    for (model, tp), ms in fp8_moe_shapes().items():
        m = MODELS[model]["moe"]
        inter, hidden = m["inter"] // tp, m["hidden"]
        g = math.gcd(BLOCK, inter)
        w1_block, w2_block = (g, BLOCK), (BLOCK, g)
        for fused in (True, False):
            E, topk = m["E"] + m["shared"] * fused, m["topk"] + m["shared"] * fused
            w1 = torch.empty(E, 2 * inter, hidden, dtype=fp8)
            w2 = torch.empty(E, hidden, inter, dtype=fp8)
            s1 = torch.empty(E, -(-2 * inter // g), -(-hidden // BLOCK))
            s2 = torch.empty(E, -(-hidden // BLOCK), -(-inter // g))
            for M, uses in sorted(ms.items()):
                x = torch.empty(M, hidden, dtype=torch.bfloat16)
                ids = torch.randint(0, E, (M, topk), dtype=torch.int32, generator=torch.Generator().manual_seed(M))
                weights = torch.empty(M, topk)

                def launch(x=x, ids=ids, weights=weights, w1=w1, w2=w2, s1=s1, s2=s2):
                    with for_device(*GPU):
                        moe.fused_experts_fp8(x, w1, w2, weights, ids, s1, s2, w1_block_shape=w1_block,
                                              w2_block_shape=w2_block, routed_scaling_factor=2.5,
                                              out_dtype=torch.bfloat16)

                yield dict(model=model, tp=tp, M=M, uses=sorted(uses), shared_fused=fused, shard=inter), launch
        shared = m["shared"] * inter
        if shared % BLOCK:  # the unfused shared expert is an unaligned dense FP8 linear pair
            gate_up = (torch.empty(2 * shared, hidden, dtype=fp8), (math.gcd(BLOCK, shared), BLOCK))
            down = (torch.empty(hidden, shared, dtype=fp8), (BLOCK, math.gcd(BLOCK, shared)))
            for M, uses in sorted(ms.items()):
                for name, (w, block) in (("shared gate_up", gate_up), ("shared down", down)):
                    x = torch.empty(M, w.shape[1], dtype=torch.bfloat16)
                    scale = torch.empty(-(-w.shape[0] // block[0]), -(-w.shape[1] // block[1]))

                    def launch(x=x, w=w, scale=scale, block=block):
                        with for_device(*GPU):
                            moe.fp8_block_linear(x, w, scale, block, out_dtype=torch.bfloat16)

                    yield dict(model=model, tp=tp, M=M, uses=sorted(uses), linear=name, block=list(block)), launch


# ------------------------------------------------------------------ tree attention


def tree_attention():
    """tree_attention_fwd as the tree_attention patch calls it from SGLang's Triton backend in
    TARGET_VERIFY: bf16 q / k / v and KV pool, bool tree mask, int32 kv_indptr, int64 kv_indices
    and mask_indptr; qo_indptr int32 in eager mode, int64 under CUDA graphs (the backend's graph
    buffers). GQA per TP rank, absorbed MLA (one 576-wide latent head, V = its first 512).
    Page size 1 and 16: kv_indices are token slots either way, so the launches are the same."""
    import bench_tree_attention as bench

    ours = our_kernels().tree_attention_fwd
    seen = set()
    for model, variant, tp, _, _, n, max_b in presets():
        attn = MODELS[model]["attn"]
        if attn is None:
            continue
        kind, heads, b, c = attn
        shape = (heads // tp, max(1, b // tp), c, c) if kind == "gqa" else (heads // tp, 1, b + c, b)
        for bs in sorted({1, max_b}):
            for page in (1, 16):
                for graph in (False, True):
                    if (shape, n, bs, page, graph) in seen:
                        continue
                    seen.add((shape, n, bs, page, graph))
                    case = bench.make_case(*shape, 64, bs, n, "cpu", torch.bfloat16, seed=bs)
                    case["mask_indptr"] = case["mask_indptr"].long()
                    if graph:
                        case["qo_indptr"] = case["qo_indptr"].long()
                    o = torch.empty(case["q"].shape[0], shape[0], shape[3], dtype=torch.bfloat16)
                    args = (case["q"], case["k_extend"], case["v_extend"], o, case["k_buffer"],
                            case["v_buffer"], case["qo_indptr"], case["kv_indptr"], case["kv_indices"],
                            case["custom_mask"], False, case["mask_indptr"], n, 1.0, 1.0, None, 0.0, page)
                    yield (dict(model=model, variant=variant, tp=tp, kind=kind, heads=shape[0], kv_heads=shape[1],
                                draft=n, batch=bs, page=page, cuda_graph=graph),
                           lambda args=args: ours(*args))


# ------------------------------------------------------------------ penalty fix-up


def penalty_fixup():
    """penalty_fixup / penalty_advance as patches/eagle_sample.py calls them: SGLang's penalizer
    tensors (fp32 [bs, V] state, fp32 / int per-request scalars as [bs, 1]), verify logits in fp32
    and bf16, int64 draft tokens and int64 retrieval links. Two penalty sets per shape: repetition
    alone (a generation_config default, Qwen2.5-Instruct's) and every penalty with min_tokens and
    logit_bias. The batch size is only the grid: one per shape."""
    import importlib

    our_kernels()  # the package, from this checkout if need be
    k = importlib.import_module("sglang_eagle3_ext.kernels.penalty_fixup")
    PenaltyState = k.PenaltyState
    seen = set()
    for model, variant, _, _, steps, n, _ in presets():
        vocab = MODELS[model]["vocab"]
        for dtype in (torch.float32, torch.bfloat16):
            for kind in ("repetition", "all"):
                if (n, steps, vocab, dtype, kind) in seen:
                    continue
                seen.add((n, steps, vocab, dtype, kind))
                bs = 2
                state = PenaltyState(repetition=torch.empty(bs, 1), cum_repetition=torch.empty(bs, vocab))
                if kind == "all":
                    state = PenaltyState(
                        frequency=torch.empty(bs, 1), cum_frequency=torch.empty(bs, vocab),
                        presence=torch.empty(bs, 1), cum_presence=torch.empty(bs, vocab),
                        repetition=torch.empty(bs, 1), cum_repetition=torch.empty(bs, vocab),
                        min_new_tokens=torch.empty(bs, 1, dtype=torch.int32),
                        out_len=torch.empty(bs, 1, dtype=torch.int32),
                        stop_penalties=torch.empty(bs, vocab), logit_bias=torch.empty(bs, vocab))
                logits = torch.empty(bs * n, vocab, dtype=dtype)
                candidates = torch.zeros(bs, n, dtype=torch.int64)
                links = torch.full((bs, n), -1, dtype=torch.int64)  # a root-only tree: valid links
                label = dict(model=model, variant=variant, draft=n, steps=steps, dtype=str(dtype)[6:],
                             penalties=kind)
                yield (dict(label, op="fixup"),
                       lambda a=(logits, candidates, links, links.clone(), state, steps + 1): k.penalty_fixup(
                           *a[:5], max_path=a[5]))
                if dtype is torch.float32:  # the advance reads no logits
                    predict = torch.zeros(bs * n, dtype=torch.int32)  # SGLang's verify outputs
                    accept_index = torch.zeros(bs, steps + 1, dtype=torch.int32)
                    accept_lens = torch.ones(bs, dtype=torch.int32)
                    yield (dict(label, op="advance"),
                           lambda a=(state, candidates, predict, accept_index, accept_lens):
                           k.penalty_advance(*a))


REGISTRY = {
    "tree_ops": tree_ops,
    "fp8_moe": fp8_moe,
    "tree_attention": tree_attention,
    "penalty_fixup": penalty_fixup,
}
