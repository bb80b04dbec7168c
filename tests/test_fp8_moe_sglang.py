"""patches/fp8_moe_shards.py with SGLang's real FusedMoE / Fp8MoEMethod / weight loader on CPU.

A GLM-4.7-shaped block-FP8 checkpoint (moe_intermediate 1536 as in GLM-4.7, hidden and expert
count scaled down) is loaded at simulated TP8 -- every rank, shard 192, not a multiple of 128 --
through SGLang's own expert mapping and FusedMoE.weight_loader, and run through
Fp8MoEMethod.apply (SGLANG_EAGLE3_EXT_FP8_MOE=on: our kernel under the Triton interpreter). The
shared expert (1536 x 1, unfused: Glm4MoeMLP with Fp8LinearMethod linears) likewise.

Simulated TP = SGLang's parallel context stamped with (tp_size, rank) and no process group; each
rank's partial output is summed here, where a real run all-reduces it. Not covered on CPU: a
multi-process TP run of a whole model, CUDA graphs, the `auto` default (CUDA only), QKV / other
dense linears of other shapes (same code path, not exercised here).
"""

import concurrent.futures
import multiprocessing

import pytest
import torch

from sglang_eagle3_ext.kernels import fp8_moe_reference as ref
from sglang_eagle3_ext.kernels.fp8_regrid import shard_moe_fp8

E, HIDDEN, INTER, TP, M, TOPK = 4, 256, 1536, 8, 7, 2
BLOCK = (128, 128)


def checkpoint():
    gen = torch.Generator().manual_seed(7)
    ckpt, full = {}, {}
    for e in range(E):
        for proj, shape in (("gate_proj", (INTER, HIDDEN)), ("up_proj", (INTER, HIDDEN)),
                            ("down_proj", (HIDDEN, INTER))):
            w, s = ref.quantize_weights(torch.randn(1, *shape, generator=gen) * 0.05, BLOCK)
            ckpt[f"model.layers.1.mlp.experts.{e}.{proj}.weight"] = w[0]
            ckpt[f"model.layers.1.mlp.experts.{e}.{proj}.weight_scale_inv"] = s[0]
            full.setdefault(proj, []).append((w[0], s[0]))
    stack = lambda proj, i: torch.stack([t[i] for t in full[proj]])  # noqa: E731
    w13 = torch.cat([stack("gate_proj", 0), stack("up_proj", 0)], 1)
    s13 = torch.cat([stack("gate_proj", 1), stack("up_proj", 1)], 1)
    x = torch.randn(M, HIDDEN, generator=gen)
    ids = torch.stack([torch.randperm(E, generator=gen)[:TOPK] for _ in range(M)]).int()
    ids[2] = -1  # a token routed to no expert
    weights = torch.rand(M, TOPK, generator=gen)
    return ckpt, (w13, s13, stack("down_proj", 0), stack("down_proj", 1)), x, weights, ids


@pytest.fixture(scope="module")
def loaded():
    """One spawn child (SGLang's global parallel context stays out of pytest): TP8, all ranks, then
    an aligned shard (TP4, 384) for comparison."""
    from fp8_moe_layer import load_and_run

    ckpt, full, x, weights, ids = checkpoint()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        unaligned = pool.submit(load_and_run, ckpt, x, weights, ids, E, HIDDEN, INTER, TP,
                                list(range(TP))).result(timeout=900)
        aligned = pool.submit(load_and_run, ckpt, x, weights, ids, E, HIDDEN, INTER, 4, [2]).result(timeout=900)
    return unaligned, aligned, full, x, weights, ids


def shared_checkpoint():
    gen = torch.Generator().manual_seed(8)
    ckpt = {}
    for proj, shape in (("gate_proj", (INTER, HIDDEN)), ("up_proj", (INTER, HIDDEN)), ("down_proj", (HIDDEN, INTER))):
        w, s = ref.quantize_weights(torch.randn(1, *shape, generator=gen) * 0.05, BLOCK)
        ckpt[f"model.layers.1.mlp.shared_experts.{proj}.weight"] = w[0]
        ckpt[f"model.layers.1.mlp.shared_experts.{proj}.weight_scale_inv"] = s[0]
    return ckpt, torch.randn(M, HIDDEN, generator=gen)


@pytest.fixture(scope="module")
def shared_expert():
    """GLM-4.7's shared expert (moe_intermediate x 1 = 1536) as SGLang builds it unfused (Glm4MoeMLP),
    at every TP8 rank, in a spawn child."""
    from fp8_moe_layer import load_shared_expert

    ckpt, x = shared_checkpoint()
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        result = pool.submit(load_shared_expert, ckpt, x, HIDDEN, INTER, TP, list(range(TP))).result(timeout=900)
    return result, ckpt, x


def test_sglang_refuses_unaligned_shard_without_the_patch(loaded):
    unaligned = loaded[0]
    assert "192 is not divisible by weight quantization block_n = 128" in unaligned["unpatched"]
    assert "TP shards that split a block" in unaligned["patch"]


def test_loaded_shards_are_the_exact_regrid(loaded):
    unaligned, _, full, *_ = loaded
    for rank in range(TP):
        w13, s13, w2, s2, b1, b2 = shard_moe_fp8(*full, BLOCK, TP, rank)
        got = unaligned[rank]
        assert got["blocks"] == (b1, b2) == ((64, 128), (128, 64))
        assert torch.equal(got["w13_weight"].view(torch.uint8), w13.view(torch.uint8))
        assert torch.equal(got["w2_weight"].view(torch.uint8), w2.view(torch.uint8))
        assert torch.equal(got["w13_weight_scale_inv"], s13)
        assert torch.equal(got["w2_weight_scale_inv"], s2)


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_tp8_outputs_sum_to_the_full_model(loaded):
    unaligned, _, full, x, weights, ids = loaded
    total = torch.zeros(M, HIDDEN)
    total_ref = torch.zeros(M, HIDDEN)
    for rank in range(TP):
        w13, s13, w2, s2, b1, b2 = shard_moe_fp8(*full, BLOCK, TP, rank)
        out = unaligned[rank]["out"]
        want = ref.fused_moe_reference(x, w13, w2, s13, s2, weights, ids, b1, b2)
        assert rel_err(out, want) < 5e-3  # same fp8 math (see test_fp8_moe.assert_same_fp8_math)
        total += out
        total_ref += want
    exact = ref.fused_moe_reference(x, full[0], full[2], full[1], full[3], weights, ids, BLOCK, BLOCK,
                                    quantize_activations=False)
    assert rel_err(total, total_ref) < 5e-3
    assert rel_err(total, exact) < 0.06  # fp8 activations only
    assert torch.all(total[2] == 0)


def test_aligned_shard_keeps_sglang_scales_and_runs_ours(loaded):
    _, aligned, full, x, weights, ids = loaded
    assert aligned["unpatched"] == "built"  # 1536 / 4 = 384: SGLang takes it as is
    w13, s13, w2, s2, b1, b2 = shard_moe_fp8(*full, BLOCK, 4, 2)
    got = aligned[2]
    assert got["blocks"] is None and (b1, b2) == (BLOCK, BLOCK)
    assert torch.equal(got["w13_weight_scale_inv"], s13) and torch.equal(got["w2_weight_scale_inv"], s2)
    want = ref.fused_moe_reference(x, w13, w2, s13, s2, weights, ids, BLOCK, BLOCK)
    assert rel_err(got["out"], want) < 5e-3


def test_shared_expert_linears_at_tp8(shared_expert):
    """Dense block-FP8 linears (Fp8LinearMethod) at shard 192: SGLang refuses them unpatched; patched,
    each rank loads exactly re-gridded scales, and the ranks' partial outputs add up to the MLP."""
    result, ckpt, x = shared_expert
    assert "output_partition_size = 192 is not divisible by weight quantization block_n = 128" in result["unpatched"]
    assert "dense/shared linears too" in result["patch"]
    key = "model.layers.1.mlp.shared_experts.{}.{}"
    gate, up, down = ((ckpt[key.format(p, "weight")], ckpt[key.format(p, "weight_scale_inv")])
                      for p in ("gate_proj", "up_proj", "down_proj"))
    w13 = torch.cat([gate[0], up[0]])[None]
    s13 = torch.cat([gate[1], up[1]])[None]
    full = (w13, s13, down[0][None], down[1][None])
    ones, zeros = torch.ones(M, 1), torch.zeros(M, 1, dtype=torch.int32)  # one expert, weight 1
    total = torch.zeros(M, HIDDEN)
    for rank in range(TP):
        w13r, s13r, w2r, s2r, b1, b2 = shard_moe_fp8(*full, BLOCK, TP, rank)
        got = result[rank]
        assert got["blocks"] == (b1, b2) == ((64, 128), (128, 64))
        assert torch.equal(got["gate_up_proj.weight"].view(torch.uint8), w13r[0].view(torch.uint8))
        assert torch.equal(got["gate_up_proj.weight_scale_inv"], s13r[0])
        assert torch.equal(got["down_proj.weight"].view(torch.uint8), w2r[0].view(torch.uint8))
        assert torch.equal(got["down_proj.weight_scale_inv"], s2r[0])
        want = ref.fused_moe_reference(x, w13r, w2r, s13r, s2r, ones, zeros, b1, b2)
        assert rel_err(got["out"], want) < 5e-3
        total += got["out"]
    exact = ref.fused_moe_reference(x, full[0], full[2], full[1], full[3], ones, zeros, BLOCK, BLOCK,
                                    quantize_activations=False)
    assert rel_err(total, exact) < 0.06
