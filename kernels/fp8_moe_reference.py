"""Plain-torch reference of the FP8 fused MoE (readability first): dequantize, route, matmul.

Layouts as SGLang's fused-experts path: w1 [E, 2I, H] fp8 e4m3 (gate rows, then up rows),
w2 [E, H, I]; block scales [E, cdiv(rows, block_n), cdiv(cols, block_k)], per-channel scales
[E, rows] or [E, rows, 1]; topk_ids [M, topk] (ids < 0 or >= E: the slot is dropped).
out[m] = routed_scaling_factor * sum_k w[m, k] * W2[e] @ (silu(gate) * up), e = topk_ids[m, k],
with gate|up = W1[e] @ x. With `quantize_activations` the inputs of both matmuls are quantized
dynamically to fp8 as the kernel does (per token and group of block_k, or per token over the whole
row for per-channel weights) and dequantized again, so the kernel is compared without fp8 noise.
"""

from typing import Optional

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
EPS = 1e-10  # SGLang's per_token_group_quant floor on the absolute maximum


def dequantize(w: torch.Tensor, scale: torch.Tensor, block_shape=None) -> torch.Tensor:
    """fp8 weights [E, N, K] -> fp32, with block [bn, bk] or per-channel (block_shape None) scales."""
    e, n, k = w.shape
    if block_shape is None:
        return w.float() * scale.reshape(e, n, 1).float()
    bn, bk = block_shape
    full = scale.float().repeat_interleave(bn, 1)[:, :n].repeat_interleave(bk, 2)[:, :, :k]
    return w.float() * full


def quantize_fp8(x: torch.Tensor, group: Optional[int]):
    """Per row and group of `group` columns (None: the whole row) -> (fp8 values, fp32 scales)."""
    rows, cols = x.shape
    group = group or cols
    pad = -cols % group
    xg = F.pad(x.float(), (0, pad)).view(rows, -1, group)
    scale = xg.abs().amax(-1).clamp(min=EPS) / FP8_MAX
    q = (xg * (1.0 / scale)[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.view(rows, -1)[:, :cols], scale


def fake_quantize(x: torch.Tensor, group: Optional[int]) -> torch.Tensor:
    """What the matmul sees after dynamic fp8 quantization: dequantized fp32 values."""
    q, scale = quantize_fp8(x, group)
    group = group or x.shape[1]
    return q.float() * scale.repeat_interleave(group, 1)[:, :x.shape[1]]


def fused_moe_reference(hidden_states, w1, w2, w1_scale, w2_scale, topk_weights, topk_ids,
                        block_shape=None, w2_block_shape=None, routed_scaling_factor=None,
                        quantize_activations=True) -> torch.Tensor:
    """fp32 [M, H]. block_shape None: per-channel weight scales, per-token activation scales."""
    w2_block_shape = w2_block_shape or block_shape
    num_experts, inter = w1.shape[0], w2.shape[2]
    x = hidden_states.float()
    out = torch.zeros(x.shape[0], w2.shape[1], device=x.device)
    for e in range(num_experts):
        rows, slots = (topk_ids == e).nonzero(as_tuple=True)
        if rows.numel() == 0:
            continue
        W1 = dequantize(w1[e:e + 1], w1_scale[e:e + 1], block_shape)[0]  # one expert at a time
        W2 = dequantize(w2[e:e + 1], w2_scale[e:e + 1], w2_block_shape)[0]
        xe = x[rows]
        if quantize_activations:
            xe = fake_quantize(xe, block_shape[1] if block_shape else None)
        gate_up = xe @ W1.T
        act = F.silu(gate_up[:, :inter]) * gate_up[:, inter:]
        if quantize_activations:
            act = fake_quantize(act, w2_block_shape[1] if w2_block_shape else None)
        y = act @ W2.T
        out.index_add_(0, rows, y * topk_weights[rows, slots].float()[:, None])
    return out * (routed_scaling_factor or 1.0)


def quantize_weights(w: torch.Tensor, block_shape=None):
    """fp32 weights [E, N, K] -> (fp8, scales) with block [bn, bk] or per-channel scales (for tests)."""
    e, n, k = w.shape
    if block_shape is None:
        scale = w.abs().amax(-1, keepdim=True).clamp(min=EPS) / FP8_MAX
        return (w / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale
    bn, bk = block_shape
    pn, pk = -n % bn, -k % bk
    wb = F.pad(w, (0, pk, 0, pn)).view(e, (n + pn) // bn, bn, (k + pk) // bk, bk)
    scale = wb.abs().amax((2, 4)).clamp(min=EPS) / FP8_MAX
    q = (wb / scale[:, :, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.view(e, n + pn, k + pk)[:, :n, :k].contiguous(), scale
