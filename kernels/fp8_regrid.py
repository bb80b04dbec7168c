"""Exact TP sharding of 128x128 block-FP8 weights whose shard is not a multiple of the block.

A checkpoint stores one scale per (block_n x block_k) tile of the *full* matrix. A tensor-parallel
shard of size I_tp along one dim starts at rank * I_tp; when that is not a multiple of the block
(GLM-4.7: moe_intermediate 1536 / TP8 = 192) the shard's rows fall across tile boundaries. Re-grid
instead of re-quantizing: with g = gcd(block, start, size) every g-slice of the shard lies inside
one checkpoint tile, so the scale of a g-slice is the scale of its tile (each tile's scale repeated
block/g times). The fp8 weights are untouched; dequantized shard == slice of the dequantized
full matrix, bit for bit.

The kernel then runs with a finer block shape along that dim: (g, block_k) for gate/up (rows
sharded), (block_n, g) for down (columns sharded), whose activations get quantized per group of g.
"""

from math import gcd

import torch


def shard_group(block: int, start: int, size: int) -> int:
    """The scale granularity a shard [start, start + size) of a block-quantized dim needs."""
    return gcd(gcd(block, start), size)


def shard_block_scale(scale: torch.Tensor, dim: int, block: int, start: int, size: int,
                      full_size: int, name: str = "scale") -> tuple[torch.Tensor, int]:
    """Scales of rows [start, start + size) of a dim of `full_size` quantized in blocks of `block`.

    Returns (scale at granularity g, g): entry j covers rows [start + j*g, start + (j+1)*g).
    """
    if block <= 0:
        raise ValueError(f"{name}: block size must be positive, got {block}")
    if scale.shape[dim] != -(-full_size // block):
        raise ValueError(f"{name}: dim {dim} has {scale.shape[dim]} scale blocks, expected "
                         f"cdiv({full_size}, {block}) = {-(-full_size // block)}")
    if start < 0 or size <= 0 or start + size > full_size:
        raise ValueError(f"{name}: shard [{start}, {start + size}) is outside [0, {full_size})")
    g = shard_group(block, start, size)
    if g == block:  # aligned shard: a plain slice of the block grid
        return scale.narrow(dim, start // block, -(-size // block)), block
    fine = scale.repeat_interleave(block // g, dim=dim)
    return fine.narrow(dim, start // g, size // g), g


def shard_moe_fp8(w13: torch.Tensor, w13_scale: torch.Tensor, w2: torch.Tensor,
                  w2_scale: torch.Tensor, block_shape, tp_size: int, tp_rank: int):
    """One TP rank's slice of full block-FP8 MoE weights, scales re-gridded where needed.

    w13 [E, 2I, H] (gate rows then up rows), w13_scale [E, 2*I/bn, cdiv(H, bk)];
    w2 [E, H, I], w2_scale [E, cdiv(H, bn), I/bk]. Returns
    (w13_shard, w13_scale_shard, w2_shard, w2_scale_shard, w1_block_shape, w2_block_shape).
    """
    bn, bk = block_shape
    E, two_i, _ = w13.shape
    inter = w2.shape[2]
    if two_i != 2 * inter:
        raise ValueError(f"w13 has {two_i} rows, expected 2 x w2.shape[2] = {2 * inter}")
    if inter % bn or inter % bk:
        raise ValueError(f"full intermediate size {inter} must be a multiple of the block {block_shape}"
                         " (gate and up scales are stored per block of each)")
    if inter % tp_size:
        raise ValueError(f"intermediate size {inter} does not split into {tp_size} equal shards")
    size = inter // tp_size
    start = tp_rank * size
    n_blk = inter // bn
    gate_s, g = shard_block_scale(w13_scale[:, :n_blk], 1, bn, start, size, inter, "w13_scale")
    up_s, _ = shard_block_scale(w13_scale[:, n_blk:], 1, bn, start, size, inter, "w13_scale")
    w2_s, g2 = shard_block_scale(w2_scale, 2, bk, start, size, inter, "w2_scale")
    w13_shard = torch.cat([w13[:, start:start + size], w13[:, inter + start:inter + start + size]], 1)
    return (w13_shard.contiguous(), torch.cat([gate_s, up_s], 1).contiguous(),
            w2[:, :, start:start + size].contiguous(), w2_s.contiguous(), (g, bk), (bn, g2))
