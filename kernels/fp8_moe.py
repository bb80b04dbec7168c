"""Fused MoE for W8A8 FP8 (e4m3) weights in Triton: block or per-channel weight scales.

Same inputs as SGLang's fused-experts path: hidden_states [M, H], w1 [E, 2I, H] (gate rows then
up rows), w2 [E, H, I], fp32 scales (block: [E, cdiv(rows, bn), cdiv(cols, bk)]; per-channel:
[E, rows] or [E, rows, 1]), topk_weights / topk_ids [M, topk]; optionally SGLang's token sort
(sorted_token_ids, expert_ids, num_tokens_post_padded). Ids < 0 or >= E drop the slot (SGLang's
filtered experts); a token with no valid slot gets zeros.

Two launches of one GEMM kernel, each program = (BLOCK_M sorted slots of one expert) x
(BLOCK_N outputs) x (one of SPLIT_K slices of K):
  1. gate|up = W1[e] @ q(x)  -> fp32 [M*topk, 2I]  (atomic adds when SPLIT_K > 1)
  2. out[m] += w * W2[e] @ q(silu(gate) * up)      -> fp32 [M, H] (atomic adds: the top-k combine)
q() is SGLang's dynamic activation quantization done on the A tile as it is loaded: per token and
group of BLOCK_K = the weight scale's block_k (per_token_group_quant), or per token over the
whole row for per-channel weights. No separate quant / activation / sum launches: the bytes that
move are the experts' fp8 weights, read once per (expert, N tile); the rest is small.

Down-proj activations are quantized per group of the down block's block_k, so a TP shard whose
size is not a multiple of 128 runs exactly with scales re-gridded to g = gcd(128, shard)
(fp8_regrid.shard_moe_fp8): pass w1_block_shape=(g, 128), w2_block_shape=(128, g).

fp8 rounding is done in fp32 bit arithmetic before the cast: Triton's interpreter rounds fp8
casts without carrying into the exponent (126.9 -> 64); an exactly representable value casts
exactly on every backend, and the result equals torch's (and the GPU's) round-to-nearest-even.
"""

import functools
import importlib
from typing import Optional

import torch
import triton
import triton.language as tl

from .fp8_moe_config import get_configs, heuristic_config, num_sms

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


@triton.jit
def _round_to_e4m3(x):
    """fp32 in [-448, 448] -> the nearest e4m3 value (ties to even), still fp32."""
    bits = x.to(tl.int32, bitcast=True)
    # normal range: keep 3 mantissa bits, round to nearest even (the carry may bump the exponent)
    normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) & -1048576).to(tl.float32, bitcast=True)
    # subnormal range (|x| < 2^-6): a fixed step of 2^-9; adding 1.5 * 2^14 rounds to it
    sub = (x + 24576.0) - 24576.0
    sub = tl.where(sub == 0.0, x * 0.0, sub)  # keep the sign of zero
    return tl.where(tl.abs(x) < 0.015625, sub, normal)


@triton.jit
def _load_a(a_rows, k, mask, K, GATED: tl.constexpr):
    """A tile as fp32; GATED: A holds gate|up (row width 2K) and the tile is silu(gate) * up."""
    if GATED:
        gate = tl.load(a_rows + k[None, :], mask=mask, other=0.0).to(tl.float32)
        up = tl.load(a_rows + K + k[None, :], mask=mask, other=0.0).to(tl.float32)
        return gate / (1.0 + tl.exp(-gate)) * up
    return tl.load(a_rows + k[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _fp8_moe_gemm_kernel(
    a_ptr, b_ptr, b_scale_ptr, c_ptr, topk_weights_ptr,
    sorted_ids_ptr, expert_ids_ptr, num_post_ptr,
    N, K, num_valid, num_experts, num_m_blocks, routed_scale,
    stride_am, stride_be, stride_bn, stride_bk, stride_cm,
    stride_se, stride_sn, stride_sk,
    A_ROW_DIV: tl.constexpr,  # slots per A row: topk for gate/up (A = tokens), 1 for down
    C_ROW_DIV: tl.constexpr,  # slots per C row: 1 for gate/up, topk for down (the combine)
    GATED: tl.constexpr,
    PER_CHANNEL: tl.constexpr,
    GROUP_N: tl.constexpr,  # block scales: rows per scale block (unused for per-channel)
    MUL_WEIGHT: tl.constexpr,
    ATOMIC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
):
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = pid % num_m_blocks  # m fastest: an expert's consecutive blocks share the weight tile in L2
    pid_n = pid // num_m_blocks
    if pid_m * BLOCK_M >= tl.load(num_post_ptr):
        return
    expert = tl.load(expert_ids_ptr + pid_m).to(tl.int64)
    if (expert < 0) | (expert >= num_experts):
        return  # filtered expert: its slots contribute nothing

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    slot = tl.load(sorted_ids_ptr + offs_m).to(tl.int64)
    m_mask = slot < num_valid
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + (slot // A_ROW_DIV)[:, None] * stride_am
    b_cols = b_ptr + expert * stride_be + offs_n[None, :] * stride_bn

    k_blocks = tl.cdiv(K, BLOCK_K)
    per_split = tl.cdiv(k_blocks, SPLIT_K)
    kb_start = pid_k * per_split
    kb_end = tl.minimum(kb_start + per_split, k_blocks)

    if PER_CHANNEL:  # one activation scale per token over the whole row (every split needs it)
        amax = tl.zeros([BLOCK_M], dtype=tl.float32)
        for kb in range(0, k_blocks):
            k = kb * BLOCK_K + offs_k
            x = _load_a(a_rows, k, m_mask[:, None] & (k[None, :] < K), K, GATED)
            amax = tl.maximum(amax, tl.max(tl.abs(x), axis=1))
        a_scale = tl.maximum(amax, 1e-10) / 448.0
        a_inv = 1.0 / a_scale

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for kb in range(kb_start, kb_end):
        k = kb * BLOCK_K + offs_k
        k_mask = k < K
        x = _load_a(a_rows, k, m_mask[:, None] & k_mask[None, :], K, GATED)
        if not PER_CHANNEL:  # per token and group of BLOCK_K (= the weights' block_k)
            a_scale = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-10) / 448.0
            a_inv = 1.0 / a_scale
        xq = _round_to_e4m3(tl.clamp(x * a_inv[:, None], -448.0, 448.0)).to(tl.float8e4nv)
        w = tl.load(b_cols + k[:, None] * stride_bk, mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        part = tl.dot(xq, w)
        if PER_CHANNEL:
            acc += part
        else:
            w_scale = tl.load(b_scale_ptr + expert * stride_se + (offs_n // GROUP_N) * stride_sn
                              + kb * stride_sk, mask=n_mask, other=0.0)
            acc += part * a_scale[:, None] * w_scale[None, :]

    if PER_CHANNEL:
        w_scale = tl.load(b_scale_ptr + expert * stride_se + offs_n * stride_sn, mask=n_mask, other=0.0)
        acc = acc * a_scale[:, None] * w_scale[None, :]
    if MUL_WEIGHT:
        weight = tl.load(topk_weights_ptr + slot, mask=m_mask, other=0.0).to(tl.float32)
        acc = acc * (weight * routed_scale)[:, None]
    c_ptrs = c_ptr + (slot // C_ROW_DIV)[:, None] * stride_cm + offs_n[None, :]
    c_mask = m_mask[:, None] & n_mask[None, :]
    if ATOMIC:
        tl.atomic_add(c_ptrs, acc, mask=c_mask)
    else:
        tl.store(c_ptrs, acc, mask=c_mask)


# ---------------------------------------------------------------- token sort


def max_sorted_slots(num_slots: int, num_experts: int, block_m: int) -> int:
    """Upper bound on padded slots: at most min(slots, E + 1) buckets are non-empty, each padded
    by < block_m (the +1 is SGLang's bucket for filtered ids)."""
    return num_slots + min(num_slots, num_experts + 1) * (block_m - 1)


def moe_align(topk_ids: torch.Tensor, block_m: int, num_experts: int):
    """SGLang's moe_align_block_size contract in plain torch (no host sync, CUDA-graph safe):
    slots sorted by expert, each expert padded to a multiple of block_m with the id M*topk;
    expert_ids per block (-1 for filtered ids); num_tokens_post_padded [1]."""
    flat = topk_ids.reshape(-1).to(torch.int64)
    slots = flat.numel()
    dev = flat.device
    key = torch.where((flat >= 0) & (flat < num_experts), flat, num_experts)  # bucket E = dropped
    counts = torch.zeros(num_experts + 1, dtype=torch.int64, device=dev)
    counts.scatter_add_(0, key, torch.ones_like(key))  # not bincount: it syncs to size its output
    counts[num_experts] = 0  # dropped slots get no blocks
    padded = (counts + block_m - 1) // block_m * block_m
    pad_start = torch.cumsum(padded, 0) - padded
    cnt_start = torch.cumsum(counts, 0) - counts
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    rank = torch.arange(slots, device=dev) - cnt_start[sorted_key]
    total = max(block_m, -(-max_sorted_slots(slots, num_experts, block_m) // block_m) * block_m)
    dest = torch.where(sorted_key < num_experts, pad_start[sorted_key] + rank, total)
    sorted_ids = torch.full((total + 1,), slots, dtype=torch.int32, device=dev)
    sorted_ids[dest] = order.to(torch.int32)
    block_start = torch.arange(0, total, block_m, device=dev)
    expert_ids = torch.searchsorted(torch.cumsum(padded, 0), block_start, right=True)
    expert_ids = torch.where(expert_ids < num_experts, expert_ids, -1).to(torch.int32)
    return sorted_ids[:total], expert_ids, padded.sum().reshape(1).to(torch.int32)


@functools.lru_cache(maxsize=None)
def sglang_align():
    """SGLang's moe_align_block_size (one CUDA kernel), where importable: on a GPU it replaces the
    ~10 small torch launches of moe_align, which would dominate a decode-sized MoE."""
    for mod in ("sglang.srt.layers.moe.moe_runner.triton_utils.moe_align_block_size",  # 0.5.2x
                "sglang.srt.layers.moe.fused_moe_triton.moe_align_block_size",
                "sglang.srt.layers.moe.fused_moe_triton.fused_moe"):
        try:
            return getattr(importlib.import_module(mod), "moe_align_block_size")
        except (ImportError, AttributeError):
            continue
    return None


def sort_tokens(topk_ids: torch.Tensor, block_m: int, num_experts: int):
    align = sglang_align() if topk_ids.is_cuda else None
    if align is not None:
        return align(topk_ids, block_m, num_experts)
    return moe_align(topk_ids, block_m, num_experts)


# ---------------------------------------------------------------- checks


def _fail(msg: str):
    raise ValueError(f"fp8 fused MoE: {msg}")


def _check_block(name: str, block) -> tuple:
    if block is None or len(block) != 2:
        _fail(f"{name} must be [block_n, block_k], got {block!r}")
    bn, bk = int(block[0]), int(block[1])
    if bn <= 0 or bk < 16 or bk & (bk - 1):
        _fail(f"{name}={list(block)}: block_n must be > 0 and block_k a power of two >= 16 "
              "(one K step per scale group)")
    return bn, bk


def _check_scale(name: str, scale: torch.Tensor, weight: str, w: torch.Tensor, block) -> None:
    E, rows, cols = w.shape
    if scale is None:
        _fail(f"{name} (scales of {weight}) is missing")
    if scale.dtype != torch.float32:
        _fail(f"{name} must be float32, got {scale.dtype}")
    if block is None:
        if tuple(scale.shape) not in ((E, rows), (E, rows, 1)):
            _fail(f"{name} has shape {list(scale.shape)}; per-channel scales of {weight} "
                  f"{list(w.shape)} must be [{E}, {rows}] or [{E}, {rows}, 1]")
        return
    want = [E, -(-rows // block[0]), -(-cols // block[1])]
    if list(scale.shape) != want:
        _fail(f"{name} has shape {list(scale.shape)}; block {list(block)} scales of {weight} "
              f"{list(w.shape)} must be {want} = [E, cdiv({rows}, {block[0]}), cdiv({cols}, {block[1]})]")


def check_inputs(hidden_states, w1, w2, w1_scale, w2_scale, topk_weights, topk_ids,
                 w1_block, w2_block, per_channel_quant) -> None:
    for name, w in (("w1", w1), ("w2", w2)):
        if w.dtype != FP8 or w.dim() != 3:
            _fail(f"{name} must be a 3-d float8_e4m3fn tensor, got {w.dtype} {list(w.shape)}")
        if w.stride(-1) != 1:
            _fail(f"{name} must have unit stride along K")
    E, two_i, hidden = w1.shape
    if two_i % 2 or tuple(w2.shape) != (E, hidden, two_i // 2):
        _fail(f"w2 has shape {list(w2.shape)}, expected [E, H, I] = [{E}, {hidden}, {two_i // 2}] "
              f"for w1 {list(w1.shape)} = [E, 2I, H]")
    if hidden_states.dim() != 2 or hidden_states.shape[1] != hidden:
        _fail(f"hidden_states has shape {list(hidden_states.shape)}, expected [M, {hidden}]")
    if hidden_states.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        _fail(f"hidden_states must be fp32/fp16/bf16 (quantized here), got {hidden_states.dtype}")
    if topk_ids.shape != topk_weights.shape or topk_ids.dim() != 2 or topk_ids.shape[0] != hidden_states.shape[0]:
        _fail(f"topk_ids {list(topk_ids.shape)} and topk_weights {list(topk_weights.shape)} "
              f"must both be [M, topk] with M = {hidden_states.shape[0]}")
    if per_channel_quant:
        if w1_block is not None or w2_block is not None:
            _fail("per_channel_quant=True takes no block_shape")
    elif w1_block is None:
        _fail("per-tensor FP8 scales are not supported: pass block_shape or per_channel_quant=True")
    else:
        if (two_i // 2) % w1_block[0]:
            i = two_i // 2
            _fail(f"w1_scale: the gate/up boundary at row {i} of w1 falls inside a {w1_block[0]}-row "
                  f"scale block; re-grid the scales of this shard to g = gcd({w1_block[0]}, {i}) "
                  "(fp8_regrid.shard_moe_fp8) and pass w1_block_shape=(g, block_k)")
    _check_scale("w1_scale", w1_scale, "w1", w1, w1_block)
    _check_scale("w2_scale", w2_scale, "w2", w2, w2_block)


# ---------------------------------------------------------------- launches


def _gemm(a, w, w_scale, c, topk_weights, sorted_ids, expert_ids, num_post, num_m_blocks, *,
          block, cfg, a_row_div, c_row_div, gated, mul_weight, routed_scale, num_valid):
    E, N, K = w.shape
    per_channel = block is None
    split = int(cfg["SPLIT_K"])
    grid = (num_m_blocks * triton.cdiv(N, cfg["BLOCK_SIZE_N"]), split)
    s_stride = w_scale.stride()
    _fp8_moe_gemm_kernel[grid](
        a, w, w_scale, c, topk_weights, sorted_ids, expert_ids, num_post,
        N, K, num_valid, E, num_m_blocks, routed_scale,
        a.stride(0), w.stride(0), w.stride(1), w.stride(2), c.stride(0),
        s_stride[0], s_stride[1], 0 if per_channel else s_stride[2],
        A_ROW_DIV=a_row_div, C_ROW_DIV=c_row_div, GATED=gated, PER_CHANNEL=per_channel,
        GROUP_N=1 if per_channel else block[0], MUL_WEIGHT=mul_weight,
        ATOMIC=mul_weight or split > 1,
        BLOCK_M=cfg["BLOCK_SIZE_M"], BLOCK_N=cfg["BLOCK_SIZE_N"], BLOCK_K=cfg["BLOCK_SIZE_K"],
        SPLIT_K=split, num_warps=cfg.get("num_warps", 4), num_stages=cfg.get("num_stages", 3),
    )


def fused_experts_fp8(
    hidden_states: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    topk_weights: torch.Tensor,
    topk_ids: torch.Tensor,
    w1_scale: torch.Tensor,
    w2_scale: torch.Tensor,
    block_shape=None,
    per_channel_quant: bool = False,
    *,
    w1_block_shape=None,
    w2_block_shape=None,
    routed_scaling_factor: Optional[float] = None,
    out_dtype: Optional[torch.dtype] = None,
    sorted_routing: Optional[tuple] = None,
    configs: Optional[tuple] = None,
) -> torch.Tensor:
    """MoE output [M, H] in out_dtype (default: hidden_states' dtype).

    block_shape [bn, bk] is SGLang's (both GEMMs); w1_block_shape / w2_block_shape override it per
    GEMM (re-gridded shards). sorted_routing = (sorted_token_ids, expert_ids,
    num_tokens_post_padded, block_m) reuses SGLang's token sort; configs = (gate/up cfg, down cfg)
    overrides fp8_moe_config's choice.
    """
    w1_block = w1_block_shape or block_shape
    w2_block = w2_block_shape or block_shape
    if not per_channel_quant:
        w1_block = w1_block and _check_block("w1 block_shape", w1_block)
        w2_block = w2_block and _check_block("w2 block_shape", w2_block)
    check_inputs(hidden_states, w1, w2, w1_scale, w2_scale, topk_weights, topk_ids,
                 w1_block, w2_block, per_channel_quant)
    if w1_scale.dim() == 3 and per_channel_quant:
        w1_scale, w2_scale = w1_scale.squeeze(-1), w2_scale.squeeze(-1)
    M, hidden = hidden_states.shape
    E, two_i, _ = w1.shape
    inter, topk = two_i // 2, topk_ids.shape[1]
    out_dtype = out_dtype or hidden_states.dtype
    dev = hidden_states.device
    if M == 0:
        return torch.zeros(0, hidden, dtype=out_dtype, device=dev)

    cfg1, cfg2 = configs or get_configs(M, E, topk, inter, hidden, w1_block, w2_block, dev)
    if configs and w1_block:  # block scales fix the K step
        cfg1, cfg2 = dict(cfg1, BLOCK_SIZE_K=w1_block[1]), dict(cfg2, BLOCK_SIZE_K=w2_block[1])
    if sorted_routing is not None:
        sorted_ids, expert_ids, num_post, block_m = sorted_routing
        cfg1, cfg2 = dict(cfg1, BLOCK_SIZE_M=block_m), dict(cfg2, BLOCK_SIZE_M=block_m)
    else:
        block_m = cfg1["BLOCK_SIZE_M"]
        sorted_ids, expert_ids, num_post = sort_tokens(topk_ids, block_m, E)
    if cfg2["BLOCK_SIZE_M"] != block_m:
        cfg2 = dict(cfg2, BLOCK_SIZE_M=block_m)
    num_slots = topk_ids.numel()
    num_m_blocks = min(expert_ids.numel(), triton.cdiv(max_sorted_slots(num_slots, E, block_m), block_m))

    # one memset: the combined output, and the gate|up buffer when split-K adds into it
    split1 = int(cfg1["SPLIT_K"]) > 1
    work = torch.zeros(M * hidden + (num_slots * two_i if split1 else 0), dtype=torch.float32, device=dev)
    out = work[:M * hidden].view(M, hidden)
    gate_up = (work[M * hidden:] if split1 else
               torch.empty(num_slots * two_i, dtype=torch.float32, device=dev)).view(num_slots, two_i)
    hidden_states = hidden_states.contiguous()
    topk_weights = topk_weights.contiguous()
    common = dict(sorted_ids=sorted_ids, expert_ids=expert_ids, num_post=num_post,
                  num_m_blocks=num_m_blocks, num_valid=num_slots)
    _gemm(hidden_states, w1, w1_scale, gate_up, topk_weights, block=w1_block, cfg=cfg1,
          a_row_div=topk, c_row_div=1, gated=False, mul_weight=False, routed_scale=1.0, **common)
    _gemm(gate_up, w2, w2_scale, out, topk_weights, block=w2_block, cfg=cfg2, a_row_div=1,
          c_row_div=topk, gated=True, mul_weight=True,
          routed_scale=float(routed_scaling_factor or 1.0), **common)
    return out if out_dtype == torch.float32 else out.to(out_dtype)


def fp8_block_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, block_shape,
                     bias: Optional[torch.Tensor] = None, out_dtype: Optional[torch.dtype] = None):
    """Dense W8A8 block-FP8 linear y = x @ W^T (+ bias) with the MoE GEMM kernel as one expert:
    any block [bn, bk] (bk a power of two >= 16), e.g. a re-gridded TP shard of a dense or
    shared-expert linear. weight [N, K] e4m3, weight_scale [cdiv(N, bn), cdiv(K, bk)] fp32."""
    block = _check_block("block_shape", block_shape)
    shape = x.shape
    x = x.reshape(-1, shape[-1]).contiguous()
    if weight.dtype != FP8 or weight.dim() != 2 or weight.shape[1] != x.shape[1]:
        _fail(f"weight must be a [N, {x.shape[1]}] float8_e4m3fn tensor, got {weight.dtype} {list(weight.shape)}")
    _check_scale("weight_scale", weight_scale[None], "weight", weight[None], block)
    M, (N, K) = x.shape[0], weight.shape
    out_dtype = out_dtype or x.dtype
    cfg = heuristic_config(M, 1, 1, N, K, block[1], num_sms(x.device))
    cfg["BLOCK_SIZE_K"] = block[1]
    block_m = cfg["BLOCK_SIZE_M"]
    blocks = triton.cdiv(max(M, 1), block_m)
    sorted_ids = torch.arange(blocks * block_m, dtype=torch.int32, device=x.device)  # ids >= M: padding
    expert_ids = torch.zeros(blocks, dtype=torch.int32, device=x.device)
    num_post = torch.full((1,), blocks * block_m, dtype=torch.int32, device=x.device)
    out = (torch.zeros if cfg["SPLIT_K"] > 1 else torch.empty)(M, N, dtype=torch.float32, device=x.device)
    if M:
        _gemm(x, weight[None], weight_scale[None], out, out, block=block, cfg=cfg, a_row_div=1, c_row_div=1,
              gated=False, mul_weight=False, routed_scale=1.0, sorted_ids=sorted_ids, expert_ids=expert_ids,
              num_post=num_post, num_m_blocks=blocks, num_valid=M)
    if bias is not None:
        out += bias.float()
    return out.to(out_dtype).reshape(*shape[:-1], N)
