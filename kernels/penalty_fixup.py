"""Triton ``penalty_fixup``: exact penalties per draft-tree node, one launch per verify.

Semantics (and the plain-torch twin): ``penalty_fixup_reference``. Each program owns one
request's tree and a block of the vocabulary, i.e. a [nodes x block] tile of the verify logits.
It derives every node's parent from the retrieval links (first-child / next-sibling: a later
sibling takes its chain's first child's parent), walks all nodes up to the root at once (at most
``num_steps + 1`` levels, ``tl.gather`` per level), marks each node's path tokens in the block,
and applies SGLang's penalty math in SGLang's order. The state is read from SGLang's own
penalizer tensors, once per program, never copied per node. Sparse in the path: per node only
the <= num_steps + 1 path tokens change the prefix's penalties.

``penalty_advance`` (one program per request) counts a verify step's tokens into the same
tensors in place, in order, after the step: the root's, then the committed ones but the last.
"""

import torch
import triton
import triton.language as tl

from .penalty_fixup_reference import PenaltyState

TILE = 4096  # elements per program: draft nodes x vocabulary block
NUM_WARPS = 8  # 16 elements a thread: no spills on sm_90 with Triton 3.6.0 or 3.8.0 (8192 spilled; not yet timed)


@triton.jit
def _rounded(x, raw_dtype: tl.constexpr, IS_BF16: tl.constexpr):
    """x (fp32) rounded to the logits' dtype and back, round-to-nearest-even as torch does.

    bf16 by bits: Triton's interpreter truncates fp32 -> bf16, the GPU rounds; this is both."""
    if IS_BF16:
        bits = x.to(tl.uint32, bitcast=True)
        up = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return tl.where(x != x, x, up.to(tl.float32, bitcast=True))
    else:
        return x.to(raw_dtype).to(tl.float32)


@triton.jit
def _penalty_fixup_kernel(
    logits_ptr, cand_ptr, next_token_ptr, next_sibling_ptr,
    freq_ptr, cum_freq_ptr, pres_ptr, cum_pres_ptr, rep_ptr, cum_rep_ptr,
    min_new_ptr, out_len_ptr, stop_ptr, bias_ptr,
    logits_stride, cand_stride, next_token_stride, next_sibling_stride,
    freq_stride, cum_freq_stride, pres_stride, cum_pres_stride, rep_stride, cum_rep_stride,
    min_new_stride, out_len_stride, stop_stride, bias_stride,
    n, vocab,
    N_PAD: tl.constexpr, MAX_PATH: tl.constexpr, BLOCK: tl.constexpr,
    HAS_FREQ: tl.constexpr, HAS_PRES: tl.constexpr, HAS_REP: tl.constexpr,
    HAS_MIN: tl.constexpr, HAS_BIAS: tl.constexpr, IS_BF16: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_vocab = offs < vocab

    # the request's tree: parent of every node from the first-child / next-sibling links
    nodes = tl.arange(0, N_PAD)
    valid = nodes < n
    first_child = tl.load(next_token_ptr + b * next_token_stride + nodes, mask=valid, other=-2).to(tl.int32)
    next_sib = tl.load(next_sibling_ptr + b * next_sibling_stride + nodes, mask=valid, other=-2).to(tl.int32)
    tokens = tl.load(cand_ptr + b * cand_stride + nodes, mask=valid, other=-1).to(tl.int32)
    parent = tl.max(tl.where(first_child[None, :] == nodes[:, None], nodes[None, :], -1), axis=1)
    prev_sib = tl.max(tl.where(next_sib[None, :] == nodes[:, None], nodes[None, :], -1), axis=1)
    # a later sibling has its chain's first child's parent: one chain step per round
    pending = tl.sum(((parent < 0) & (prev_sib >= 0)).to(tl.int32), axis=0)
    rounds = 0
    while (pending > 0) & (rounds < N_PAD):
        of_prev = tl.gather(parent, tl.maximum(prev_sib, 0), 0)
        parent = tl.where((parent < 0) & (prev_sib >= 0), of_prev, parent)
        pending = tl.sum(((parent < 0) & (prev_sib >= 0)).to(tl.int32), axis=0)
        rounds += 1

    # walk every node up to the root at once: mark its path's tokens in this vocab block
    if HAS_FREQ:
        f = tl.load(freq_ptr + b * freq_stride)
        cum_freq = tl.load(cum_freq_ptr + b * cum_freq_stride + offs, mask=in_vocab, other=0.0)
        cum_freq = tl.broadcast_to(cum_freq[None, :], [N_PAD, BLOCK])
    seen = tl.zeros([N_PAD, BLOCK], dtype=tl.int1)
    path_len = tl.zeros([N_PAD], dtype=tl.int32)
    on_path = tl.where(valid, nodes, -1)
    for _ in range(MAX_PATH):
        live = on_path >= 0
        at = tl.maximum(on_path, 0)
        hit = (tl.gather(tokens, at, 0)[:, None] == offs[None, :]) & live[:, None]
        seen = seen | hit
        if HAS_FREQ:  # one +f per occurrence: SGLang's scatter_add_ bits, in any path order
            cum_freq = tl.where(hit, cum_freq + f, cum_freq)
        path_len += live.to(tl.int32)
        on_path = tl.where(live, tl.gather(parent, at, 0), -1)

    acc = tl.zeros([N_PAD, BLOCK], dtype=tl.float32)
    if HAS_FREQ:
        acc = acc - cum_freq
    if HAS_PRES:
        p_val = tl.load(pres_ptr + b * pres_stride)
        cum_pres = tl.load(cum_pres_ptr + b * cum_pres_stride + offs, mask=in_vocab, other=0.0)
        acc = acc - tl.where(seen, p_val, cum_pres[None, :])
    if HAS_MIN:
        generated = tl.load(out_len_ptr + b * out_len_stride) + path_len
        masked = generated < tl.load(min_new_ptr + b * min_new_stride)
        stop = tl.load(stop_ptr + b * stop_stride + offs, mask=in_vocab, other=0.0)
        acc = acc + tl.where(masked[:, None], stop[None, :], 0.0)

    rows = b * n + nodes.to(tl.int64)
    ptrs = logits_ptr + rows[:, None] * logits_stride + offs[None, :]
    io_mask = valid[:, None] & in_vocab[None, :]
    raw = tl.load(ptrs, mask=io_mask, other=0.0)
    x = _rounded(raw.to(tl.float32) + acc, raw.dtype, IS_BF16)  # logits.add_ rounds to its dtype
    if HAS_REP:
        r_val = tl.load(rep_ptr + b * rep_stride)
        cum_rep = tl.load(cum_rep_ptr + b * cum_rep_stride + offs, mask=in_vocab, other=1.0)
        scale = tl.where(seen, r_val, cum_rep[None, :])
        x = _rounded(tl.where(x < 0, x * scale, x / scale), raw.dtype, IS_BF16)
    if HAS_BIAS:
        x = x + tl.load(bias_ptr + b * bias_stride + offs, mask=in_vocab, other=0.0)[None, :]
    tl.store(ptrs, _rounded(x, raw.dtype, IS_BF16).to(raw.dtype), mask=io_mask)


@triton.jit
def _penalty_advance_kernel(
    draft_ptr, predict_ptr, accept_index_ptr, accept_lens_ptr,
    freq_ptr, cum_freq_ptr, pres_ptr, cum_pres_ptr, rep_ptr, cum_rep_ptr, out_len_ptr,
    accept_stride, freq_stride, cum_freq_stride, pres_stride, cum_pres_stride,
    rep_stride, cum_rep_stride, out_len_stride,
    WIDTH: tl.constexpr,
    HAS_FREQ: tl.constexpr, HAS_PRES: tl.constexpr, HAS_REP: tl.constexpr, HAS_LEN: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    count = tl.load(accept_lens_ptr + b)
    root = tl.load(accept_index_ptr + b * accept_stride).to(tl.int64)
    for i in range(WIDTH):  # sequential: a token seen twice gets two frequency adds
        if i < count:
            # the root's token, then what the target committed after each accepted node but the last
            prev = tl.load(accept_index_ptr + b * accept_stride + tl.maximum(i - 1, 0)).to(tl.int64)
            tok = tl.where(i == 0, tl.load(draft_ptr + root), tl.load(predict_ptr + prev)).to(tl.int64)
            if HAS_FREQ:
                ptr = cum_freq_ptr + b * cum_freq_stride + tok
                tl.store(ptr, tl.load(ptr) + tl.load(freq_ptr + b * freq_stride))
            if HAS_PRES:
                tl.store(cum_pres_ptr + b * cum_pres_stride + tok, tl.load(pres_ptr + b * pres_stride))
            if HAS_REP:
                tl.store(cum_rep_ptr + b * cum_rep_stride + tok, tl.load(rep_ptr + b * rep_stride))
            # the next token may be this one: its read must see this store from every thread
            tl.debug_barrier()
    if HAS_LEN:
        ptr = out_len_ptr + b * out_len_stride
        tl.store(ptr, tl.load(ptr) + count.to(ptr.dtype.element_ty))


def _arg(t, dummy):
    """(pointer, row stride) of an optional state tensor; a dummy pointer where it is off."""
    return (dummy, 0) if t is None else (t, t.stride(0))


def _check_tree(candidates, retrive_next_token, retrive_next_sibling):
    from .tree_verify import check_rows

    bs, n = candidates.shape
    check_rows(bs, candidates=candidates, retrive_next_token=retrive_next_token,
               retrive_next_sibling=retrive_next_sibling)
    if retrive_next_token.shape[1] != n or retrive_next_sibling.shape[1] != n:
        raise ValueError("retrieval links must have one entry per draft token")


def penalty_fixup(logits: torch.Tensor, candidates: torch.Tensor, retrive_next_token: torch.Tensor,
                  retrive_next_sibling: torch.Tensor, state: PenaltyState,
                  max_path: int | None = None) -> None:
    """Exact penalties per tree node on ``logits`` [bs * n, V], in place.

    ``max_path``: most nodes on a root-to-node path (num_steps + 1); default n (any tree)."""
    bs, n = candidates.shape
    vocab = logits.shape[1]
    if logits.dim() != 2 or logits.shape[0] != bs * n or logits.stride(1) != 1:
        raise ValueError("logits must be [bs * draft_tokens, vocab] with unit column stride")
    _check_tree(candidates, retrive_next_token, retrive_next_sibling)
    state.check(bs, vocab)
    if bs == 0 or not state.any():
        return
    d = logits
    s = state
    args = [_arg(t, d) for t in (s.frequency, s.cum_frequency, s.presence, s.cum_presence,
                                 s.repetition, s.cum_repetition, s.min_new_tokens, s.out_len,
                                 s.stop_penalties, s.logit_bias)]
    ptrs, strides = zip(*args)
    n_pad = triton.next_power_of_2(n)
    block = min(max(TILE // n_pad, 16), triton.next_power_of_2(vocab))
    _penalty_fixup_kernel[(bs, triton.cdiv(vocab, block))](
        logits, candidates, retrive_next_token, retrive_next_sibling, *ptrs,
        logits.stride(0), candidates.stride(0), retrive_next_token.stride(0),
        retrive_next_sibling.stride(0), *strides, n, vocab,
        N_PAD=n_pad, MAX_PATH=min(max_path or n, n), BLOCK=block,
        HAS_FREQ=s.frequency is not None, HAS_PRES=s.presence is not None,
        HAS_REP=s.repetition is not None, HAS_MIN=s.min_new_tokens is not None,
        HAS_BIAS=s.logit_bias is not None, IS_BF16=logits.dtype == torch.bfloat16,
        num_warps=NUM_WARPS,
    )


def penalty_advance(state: PenaltyState, draft_tokens: torch.Tensor, predict: torch.Tensor,
                    accept_index: torch.Tensor, accept_lens: torch.Tensor) -> None:
    """Count a verify step's committed tokens but the last (the next root) into the state, in place."""
    bs, width = accept_index.shape
    if bs == 0:
        return
    if accept_index.stride(1) != 1 or accept_lens.numel() != bs:
        raise ValueError("accept_index must be [bs, width] with unit column stride, accept_lens [bs]")
    s = state
    if s.frequency is None and s.presence is None and s.repetition is None and s.out_len is None:
        return
    d = accept_lens
    args = [_arg(t, d) for t in (s.frequency, s.cum_frequency, s.presence, s.cum_presence,
                                 s.repetition, s.cum_repetition, s.out_len)]
    ptrs, strides = zip(*args)
    _penalty_advance_kernel[(bs,)](
        draft_tokens.reshape(-1), predict.reshape(-1), accept_index, accept_lens.contiguous(), *ptrs,
        accept_index.stride(0), *strides[:6], strides[6],
        WIDTH=width, HAS_FREQ=s.frequency is not None, HAS_PRES=s.presence is not None,
        HAS_REP=s.repetition is not None, HAS_LEN=s.out_len is not None,
        num_warps=1,  # scalar work, at most num_steps + 1 tokens
    )
