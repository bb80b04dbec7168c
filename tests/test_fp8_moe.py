"""FP8 fused MoE (kernels/fp8_moe.py) vs the plain-torch reference, TP re-gridding, configs, errors.

CPU: Triton interpreter, fp32 activations and output (bf16 arithmetic does not run in the
interpreter), fp8 e4m3 weights. Hidden sizes are scaled down (128/256) to keep the interpreter
fast; shard sizes are the real ones (192, 96, 64, 256, 384). With TRITON_INTERPRET=0 and a GPU the
same tests run on the device.
"""

import os
import zlib

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import import_or_none as _module, require_upstream  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from sglang_eagle3_ext.kernels import fp8_moe_config as moe_config  # noqa: E402
from sglang_eagle3_ext.kernels import fp8_moe_reference as ref  # noqa: E402
from sglang_eagle3_ext.kernels.fp8_moe import (  # noqa: E402
    _round_to_e4m3,
    fp8_block_linear,
    fused_experts_fp8,
    moe_align,
)
from sglang_eagle3_ext.kernels.fp8_regrid import shard_moe_fp8  # noqa: E402

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" else "cuda"


def routing(M, E, topk, gen, no_expert_rows=(), used_experts=None):
    """Random top-k routing; rows in no_expert_rows route nowhere (ids -1); only `used_experts`
    (default: all but the last two) receive tokens, so some experts get none."""
    pool = torch.arange(used_experts or max(topk, E - 2))
    ids = torch.stack([pool[torch.randperm(pool.numel(), generator=gen)[:topk]] for _ in range(M)])
    if M > 2:
        ids[M // 2, 0] = -1  # one dropped slot (SGLang's filtered expert)
    for r in no_expert_rows:
        if r < M:
            ids[r] = -1
    weights = torch.rand(M, topk, generator=gen)
    return ids.to(torch.int32), weights


def make_experts(E, hidden, inter, w1_block, w2_block, gen):
    w1 = torch.randn(E, 2 * inter, hidden, generator=gen) * 0.05
    w2 = torch.randn(E, hidden, inter, generator=gen) * 0.05
    w1q, s1 = ref.quantize_weights(w1, w1_block)
    w2q, s2 = ref.quantize_weights(w2, w2_block)
    return w1q, s1, w2q, s2


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def assert_same_fp8_math(got, want):
    """Kernel vs the reference with the same activation quantization: only fp32 summation order
    differs, which now and then moves an activation across an fp8 rounding boundary (one fp8 step
    in one element). A wrong scale, group or routing is off by percents."""
    assert rel_err(got, want) < 5e-3
    assert (got - want).abs().max().item() < 1e-2 * want.abs().max().item()


def to_dev(*ts):
    return [t.to(DEVICE) for t in ts]


# (scales, shard I, hidden, E, topk, M, config override) -- shard sizes 192/96/64/256/384,
# E 4..16, top-k 1..8, M 1..64; block shapes as re-gridded shards get them (g = gcd(128, I)).
CASES = [
    ("block", 192, 128, 8, 8, 1, None),
    ("block", 192, 256, 16, 6, 13, dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, SPLIT_K=2)),
    ("block", 96, 128, 16, 4, 33, None),
    ("block", 64, 256, 4, 1, 64, dict(BLOCK_SIZE_M=32, BLOCK_SIZE_N=64, SPLIT_K=2)),
    ("block", 256, 128, 12, 8, 17, None),
    ("block", 384, 128, 6, 2, 7, dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=128, SPLIT_K=1)),
    ("channel", 192, 128, 8, 2, 64, None),
    ("channel", 96, 128, 16, 6, 3, dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=32, SPLIT_K=4)),
    ("channel", 384, 128, 4, 3, 1, None),
    ("channel", 64, 128, 5, 1, 9, dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, BLOCK_SIZE_K=32, SPLIT_K=2)),
]


def case_id(c):
    return f"{c[0]}-I{c[1]}-H{c[2]}-E{c[3]}-top{c[4]}-M{c[5]}" + ("-cfg" if c[6] else "")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_kernel_matches_reference(case):
    scales, inter, hidden, E, topk, M, cfg = case
    gen = torch.Generator().manual_seed(zlib.crc32(case_id(case).encode()))
    if scales == "block":
        g = min(128, inter & -inter)  # gcd(128, inter)
        w1_block, w2_block = (g, 128), (128, g)
    else:
        w1_block = w2_block = None
    w1, s1, w2, s2 = make_experts(E, hidden, inter, w1_block, w2_block, gen)
    ids, weights = routing(M, E, topk, gen, no_expert_rows=(M - 1,) if M > 1 else ())
    x = torch.randn(M, hidden, generator=gen)
    configs = (dict(cfg), dict(cfg)) if cfg else None
    got = fused_experts_fp8(*to_dev(x, w1, w2, weights, ids, s1, s2), per_channel_quant=w1_block is None,
                            w1_block_shape=w1_block, w2_block_shape=w2_block, routed_scaling_factor=2.5,
                            configs=configs).cpu()
    assert got.dtype == torch.float32 and got.shape == (M, hidden)

    want = ref.fused_moe_reference(x, w1, w2, s1, s2, weights, ids, w1_block, w2_block, 2.5)
    assert_same_fp8_math(got, want)
    if M > 1:
        assert torch.all(got[M - 1] == 0)  # a token routed to no expert
    # and within fp8 tolerance of the unquantized-activation computation
    exact = ref.fused_moe_reference(x, w1, w2, s1, s2, weights, ids, w1_block, w2_block, 2.5,
                                    quantize_activations=False)
    assert rel_err(got, exact) < 0.06


@triton.jit
def _round_kernel(x_ptr, q_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.clamp(tl.load(x_ptr + offs, mask=offs < n), -448.0, 448.0)
    tl.store(q_ptr + offs, _round_to_e4m3(x).to(tl.float8e4nv), mask=offs < n)


def test_fp8_rounding_equals_torch():
    """Activation quantization rounds like torch's cast (RTNE, carries into the exponent,
    subnormals, signed zero) -- the interpreter's own fp8 cast does not (126.9 -> 64)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(4096, generator=gen) * 100, torch.randn(4096, generator=gen) * 1e-2,
                   torch.randn(1024, generator=gen) * 1e-4,
                   torch.tensor([0.0, -0.0, 448.0, -448.0, 447.0, 600.0, 126.87, -31.2, 2**-10, 2**-9 * 1.5])])
    q = torch.empty(x.shape, dtype=ref.FP8, device=DEVICE)
    _round_kernel[(triton.cdiv(x.numel(), 1024),)](x.to(DEVICE), q, x.numel(), BLOCK=1024)
    want = x.clamp(-448, 448).to(ref.FP8)
    assert torch.equal(q.cpu().view(torch.uint8), want.view(torch.uint8))


@pytest.mark.parametrize("inter_full,tp", [(384, 2), (384, 4), (384, 6), (512, 2), (768, 2)],
                         ids=["shard192", "shard96", "shard64", "shard256", "shard384"])
def test_tp_shards_sum_to_full_model(inter_full, tp):
    """Each rank's re-gridded shard runs the kernel; the partial outputs (what TP all-reduces)
    add up to the full model's output. Re-gridding itself is exact: the dequantized shard is a
    bit-identical slice of the dequantized full weights."""
    E, hidden, topk, M, block = 8, 128, 4, 9, (128, 128)
    gen = torch.Generator().manual_seed(inter_full * 10 + tp)
    w1, s1, w2, s2 = make_experts(E, hidden, inter_full, block, block, gen)
    ids, weights = routing(M, E, topk, gen, no_expert_rows=(3,))
    x = torch.randn(M, hidden, generator=gen)
    W1, W2 = ref.dequantize(w1, s1, block), ref.dequantize(w2, s2, block)

    total = torch.zeros(M, hidden)
    total_ref = torch.zeros(M, hidden)
    size = inter_full // tp
    for rank in range(tp):
        w1r, s1r, w2r, s2r, b1, b2 = shard_moe_fp8(w1, s1, w2, s2, block, tp, rank)
        g = b1[0]
        assert g == min(128, size & -size) and b2 == (128, g)
        rows = torch.cat([torch.arange(rank * size, (rank + 1) * size),
                          inter_full + torch.arange(rank * size, (rank + 1) * size)])
        assert torch.equal(ref.dequantize(w1r, s1r, b1), W1[:, rows])
        assert torch.equal(ref.dequantize(w2r, s2r, b2), W2[:, :, rank * size:(rank + 1) * size])
        total += fused_experts_fp8(*to_dev(x, w1r, w2r, weights, ids, s1r, s2r),
                                   w1_block_shape=b1, w2_block_shape=b2).cpu()
        total_ref += ref.fused_moe_reference(x, w1r, w2r, s1r, s2r, weights, ids, b1, b2)

    assert_same_fp8_math(total, total_ref)
    full_exact = ref.fused_moe_reference(x, w1, w2, s1, s2, weights, ids, block, block,
                                         quantize_activations=False)
    full_fp8 = ref.fused_moe_reference(x, w1, w2, s1, s2, weights, ids, block, block)
    assert rel_err(total, full_exact) < 0.06
    # finer down-proj activation groups are no worse than the full model's 128-groups
    assert rel_err(total, full_exact) <= rel_err(full_fp8, full_exact) * 1.5 + 1e-3
    assert torch.all(total[3] == 0)


def test_unaligned_shard_without_regrid_is_refused():
    E, hidden, inter = 4, 128, 192
    gen = torch.Generator().manual_seed(1)
    w1, s1, w2, s2 = make_experts(E, hidden, inter, (128, 128), (128, 128), gen)
    ids, weights = routing(2, E, 2, gen)
    with pytest.raises(ValueError, match=r"w1_scale: the gate/up boundary at row 192.*gcd\(128, 192\)"):
        fused_experts_fp8(torch.randn(2, hidden), w1, w2, weights, ids, s1, s2, [128, 128])


def test_sorted_routing_and_align_contract():
    """SGLang's sort contract: each block one expert (-1: filtered), padding id = M*topk, every
    valid slot once; the kernel gives the same output from a given sort with another BLOCK_M."""
    E, hidden, inter, M, topk = 6, 128, 64, 11, 3
    gen = torch.Generator().manual_seed(2)
    w1, s1, w2, s2 = make_experts(E, hidden, inter, (64, 128), (128, 64), gen)
    ids, weights = routing(M, E, topk, gen, no_expert_rows=(0,))
    sorted_ids, expert_ids, num_post = moe_align(ids, 32, E)
    n = int(num_post)
    assert n % 32 == 0 and n <= sorted_ids.numel()
    flat = ids.reshape(-1).long()
    valid = sorted(i for i in range(M * topk) if 0 <= flat[i] < E)
    assert sorted(s for s in sorted_ids[:n].tolist() if s < M * topk) == valid
    for b in range(n // 32):
        slots = [s for s in sorted_ids[b * 32:(b + 1) * 32].tolist() if s < M * topk]
        assert slots and all(flat[s] == expert_ids[b] for s in slots)
    x = torch.randn(M, hidden, generator=gen)
    blocks = dict(w1_block_shape=(64, 128), w2_block_shape=(128, 64))
    given = fused_experts_fp8(*to_dev(x, w1, w2, weights, ids, s1, s2),
                              sorted_routing=tuple(to_dev(sorted_ids, expert_ids, num_post)) + (32,),
                              **blocks).cpu()
    own = fused_experts_fp8(*to_dev(x, w1, w2, weights, ids, s1, s2), **blocks).cpu()
    torch.testing.assert_close(given, own, atol=1e-5, rtol=1e-5)


def _inputs(E=4, hidden=128, inter=128, block=(128, 128)):
    gen = torch.Generator().manual_seed(3)
    w1, s1, w2, s2 = make_experts(E, hidden, inter, block, block, gen)
    ids, weights = routing(2, E, 2, gen)
    return dict(hidden_states=torch.randn(2, hidden), w1=w1, w2=w2, topk_weights=weights,
                topk_ids=ids, w1_scale=s1, w2_scale=s2)


@pytest.mark.parametrize("change,match", [
    (dict(w1_scale=torch.ones(4, 2, 2)), r"w1_scale has shape \[4, 2, 2\]; block \[128, 128\] scales "
                                         r"of w1 \[4, 256, 128\] must be \[4, 2, 1\]"),
    (dict(w2_scale=torch.ones(4, 1, 2)), r"w2_scale has shape \[4, 1, 2\].*must be \[4, 1, 1\]"),
    (dict(w2_scale=torch.ones(4, 1, 1, dtype=torch.float16)), r"w2_scale must be float32"),
    (dict(w1_scale=None), r"w1_scale \(scales of w1\) is missing"),
    (dict(block_shape=[128, 100]), r"w1 block_shape=\[128, 100\]: .*power of two"),
    (dict(block_shape=[128]), r"w1 block_shape must be \[block_n, block_k\]"),
    (dict(block_shape=None), r"per-tensor FP8 scales are not supported"),
    (dict(per_channel_quant=True, block_shape=None, w1_scale=torch.ones(4, 128)),
     r"w1_scale has shape \[4, 128\]; per-channel scales of w1 \[4, 256, 128\] must be \[4, 256\]"),
    (dict(w1=torch.zeros(4, 256, 128)), r"w1 must be a 3-d float8_e4m3fn tensor"),
    (dict(hidden_states=torch.zeros(2, 64)), r"hidden_states has shape \[2, 64\], expected \[M, 128\]"),
    (dict(topk_ids=torch.zeros(2, 3, dtype=torch.int32)), r"topk_ids \[2, 3\] and topk_weights \[2, 2\]"),
])
def test_bad_inputs_name_the_tensor(change, match):
    kw = dict(_inputs(), block_shape=[128, 128])
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        fused_experts_fp8(**kw)


def test_tuned_config_files(tmp_path, monkeypatch):
    """A tuned file in SGLang's format is found by (E, N, K, device, block), the entry closest
    to M is used, and a malformed entry is refused naming the file."""
    E, hidden, inter = 4, 128, 64
    name = moe_config.config_file_name(E, inter, hidden, moe_config.device_name(DEVICE), (64, 128))
    assert name == (f"E=4,N=64,K=128,device_name={moe_config.device_name(DEVICE)},"
                    "dtype=fp8_w8a8,block_shape=[64, 128].json")
    up = {1: dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, SPLIT_K=1, num_warps=4, num_stages=2),
          64: dict(BLOCK_SIZE_M=32, BLOCK_SIZE_N=64, SPLIT_K=1, num_warps=4, num_stages=2)}
    down = {1: dict(BLOCK_SIZE_M=64, BLOCK_SIZE_N=128, SPLIT_K=2, num_warps=4, num_stages=2)}
    moe_config.save_configs(tmp_path / name, up)
    moe_config.save_configs(tmp_path / name.replace(".json", "_down.json"), down)
    monkeypatch.setenv(moe_config.ENV_DIR, str(tmp_path))
    moe_config.load_configs.cache_clear()
    c1, c2 = moe_config.get_configs(3, E, 2, inter, hidden, (64, 128), (128, 64), DEVICE)
    assert (c1["BLOCK_SIZE_M"], c1["BLOCK_SIZE_N"], c1["BLOCK_SIZE_K"]) == (16, 32, 128)
    assert (c2["BLOCK_SIZE_M"], c2["BLOCK_SIZE_N"], c2["SPLIT_K"], c2["BLOCK_SIZE_K"]) == (16, 128, 2, 64)
    assert moe_config.get_configs(50, E, 2, inter, hidden, (64, 128), (128, 64), DEVICE)[0]["BLOCK_SIZE_M"] == 32

    (tmp_path / name).write_text('{"1": {"BLOCK_SIZE_M": 16, "BLOCK_SIZE_N": 32, "GROUP_SIZE_Q": 1}}')
    moe_config.load_configs.cache_clear()
    with pytest.raises(ValueError, match="GROUP_SIZE_Q"):
        moe_config.get_configs(3, E, 2, inter, hidden, (64, 128), (128, 64), DEVICE)
    moe_config.load_configs.cache_clear()


def test_heuristic_small_m_fills_the_gpu():
    """Decode/verify sizes at GLM-4.7 TP8 (E=160, top-8, H=5120, I=192) on a 132-SM H100: small
    BLOCK_M, and split-K on the gate/up GEMM whose (experts x N tiles) grid would leave SMs idle."""
    for M in (1, 8, 32):
        up = moe_config.heuristic_config(M, 160, 8, 384, 5120, 128, sms=132)
        down = moe_config.heuristic_config(M, 160, 8, 5120, 192, 64, sms=132)
        assert up["BLOCK_SIZE_M"] == 16
        grid_up = min(160, 8 * M) * -(-384 // up["BLOCK_SIZE_N"]) * up["SPLIT_K"]
        assert grid_up >= 132, (M, up)
        assert down["SPLIT_K"] == 1  # 80 N tiles per expert already fill the GPU
    assert moe_config.heuristic_config(4096, 160, 8, 384, 5120, 128, sms=132)["BLOCK_SIZE_M"] == 64


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 needs a GPU (the interpreter has no bf16 arithmetic)")
def test_bf16_in_out_on_gpu():
    E, hidden, inter, M, topk = 16, 512, 192, 32, 8
    gen = torch.Generator().manual_seed(4)
    w1, s1, w2, s2 = make_experts(E, hidden, inter, (64, 128), (128, 64), gen)
    ids, weights = routing(M, E, topk, gen)
    x = torch.randn(M, hidden, generator=gen)
    got = fused_experts_fp8(*to_dev(x.bfloat16(), w1, w2, weights, ids, s1, s2),
                            w1_block_shape=(64, 128), w2_block_shape=(128, 64))
    assert got.dtype == torch.bfloat16
    want = ref.fused_moe_reference(x.bfloat16().float(), w1, w2, s1, s2, weights, ids, (64, 128), (128, 64))
    assert rel_err(got.float().cpu(), want) < 0.01


def test_matches_sglangs_own_triton_kernel():
    """Same layouts and math as SGLang's Triton fused_moe_kernel (run here through its own
    invoke_fused_moe_kernel, in the interpreter) on a 128-aligned shard. SGLang gets activations
    quantized by torch (its own quant kernel hits the interpreter's fp8 rounding bug, see
    test_fp8_rounding_equals_torch) and keeps its fp16 intermediates: agreement to fp16 level."""
    kernels = require_upstream(_module("sglang.kernels.ops.moe.fused_moe_triton_kernels"),
                               "sglang.kernels.ops.moe.fused_moe_triton_kernels")
    if DEVICE != "cpu":
        pytest.skip("CPU cross-check (on a GPU the benchmark compares with SGLang's full path)")
    E, hidden, inter, M, topk = 4, 256, 256, 6, 2
    gen = torch.Generator().manual_seed(5)
    w1, s1, w2, s2 = make_experts(E, hidden, inter, (128, 128), (128, 128), gen)
    ids, weights = routing(M, E, topk, gen)
    x = torch.randn(M, hidden, generator=gen)
    cfg = dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=64, BLOCK_SIZE_K=128, GROUP_SIZE_M=1)
    sorted_ids, expert_ids, num_post = moe_align(ids, 16, E)  # SGLang's sort needs CUDA
    flags = dict(compute_type=tl.float16, use_fp8_w8a8=True, use_int8_w8a8=False, use_int8_w8a16=False,
                 use_int4_w4a16=False, per_channel_quant=False, block_shape=[128, 128])
    gate_up = torch.empty(M * topk, 2 * inter, dtype=torch.float16)
    xq, xs = ref.quantize_fp8(x, 128)
    kernels.invoke_fused_moe_kernel(xq, w1, None, gate_up, xs, s1, None, weights, ids, sorted_ids, expert_ids,
                                    num_post, False, topk, cfg, **flags)
    act = torch.nn.functional.silu(gate_up[:, :inter].float()) * gate_up[:, inter:].float()
    aq, as_ = ref.quantize_fp8(act.half().float(), 128)
    down = torch.zeros(M, topk, hidden, dtype=torch.float16)  # the dropped slot stays 0
    kernels.invoke_fused_moe_kernel(aq, w2, None, down, as_, s2, None, weights, ids, sorted_ids, expert_ids,
                                    num_post, True, 1, cfg, **flags)
    ours = fused_experts_fp8(x, w1, w2, weights, ids, s1, s2, [128, 128])
    assert rel_err(ours, down.float().sum(1)) < 1e-2


def test_empty_batch_and_every_slot_dropped():
    kw = _inputs()
    empty = fused_experts_fp8(torch.zeros(0, 128), kw["w1"], kw["w2"], torch.zeros(0, 2),
                              torch.zeros(0, 2, dtype=torch.int32), kw["w1_scale"], kw["w2_scale"], [128, 128])
    assert empty.shape == (0, 128)
    kw["topk_ids"] = torch.full((2, 2), -1, dtype=torch.int32)
    assert torch.all(fused_experts_fp8(block_shape=[128, 128], **kw) == 0)


@pytest.mark.parametrize("block,n,k", [((64, 128), 384, 256), ((128, 32), 256, 96)], ids=["gate_up-g64", "down-g32"])
def test_dense_block_linear(block, n, k):
    """fp8_block_linear (dense / shared-expert linears of re-gridded shards): [.., K] input, bias."""
    gen = torch.Generator().manual_seed(n + k)
    w, s = ref.quantize_weights(torch.randn(1, n, k, generator=gen) * 0.05, block)
    x = torch.randn(2, 3, k, generator=gen)
    bias = torch.randn(n, generator=gen)
    got = fp8_block_linear(*to_dev(x, w[0], s[0]), block, bias.to(DEVICE)).cpu()
    want = ref.fake_quantize(x.reshape(6, k), block[1]) @ ref.dequantize(w, s, block)[0].T + bias
    assert got.shape == (2, 3, n)
    assert_same_fp8_math(got.reshape(6, n), want)
    with pytest.raises(ValueError, match=r"weight_scale has shape"):
        fp8_block_linear(x, w[0], s[0][:, :1], block)
