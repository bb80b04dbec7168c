"""Triton ``tree_speculative_sampling_target_only``: a drop-in for the CUDA op.

Tree verification for sampled (non-greedy) requests using only the target's
probabilities ``q`` (the draft's distribution is not needed). Per request:

* Walk from the root. At a node, with the node's coin ``c`` (``uniform_samples``
  at the root, then at each accepted node), visit its children in sibling order
  accumulating ``acc += q_node[token]``; accept the first child with
  ``q_node[token] > 0`` and (``c < acc / threshold_acc`` or
  ``q_node[token] >= threshold_single``). With both thresholds 1 this draws the
  next token from ``q_node`` by inverse CDF over the children first, so every
  emitted token is distributed exactly as the target's ``q`` at its position.
* A rejected child gets ``draft_probs[node, token] = q_node[token]`` (the CUDA op
  does this; ``draft_probs`` is normally zeros), which removes it from the
  residual below.
* The last token is drawn with ``uniform_samples_for_final_sampling`` from
  ``relu(q - draft_probs)`` at the last accepted node, or from ``q`` itself when
  every possible draft was accepted: the first vocab id whose running sum exceeds
  ``coin * total``; if rounding leaves none, the last id with mass; if there is
  no mass at all, ``vocab - 1``.

Outputs as in ``verify_tree_greedy``: ``accept_index``, ``accept_token_num``
(drafts only), ``predicts`` at the root and accepted nodes. Follows SGLang
0.5.23's JIT kernel (zero-mass tokens are never accepted, strict ``c < acc``);
older sgl-kernel builds test ``c <= acc`` without the mass check, which differs
only on ties and zero-probability candidates. ``deterministic`` is accepted for
signature compatibility; this kernel is always deterministic.
"""

import torch
import triton
import triton.language as tl

from .tree_verify import check_rows


@triton.jit
def _tree_sampling_kernel(
    predicts_ptr,
    accept_index_ptr,
    accept_token_num_ptr,
    candidates_ptr,
    retrive_index_ptr,
    retrive_next_token_ptr,
    retrive_next_sibling_ptr,
    uniform_ptr,
    uniform_final_ptr,
    target_probs_ptr,
    draft_probs_ptr,
    candidates_stride,
    index_stride,
    next_token_stride,
    next_sibling_stride,
    uniform_stride,
    accept_stride,
    target_stride_b,
    target_stride_n,
    draft_stride_b,
    draft_stride_n,
    vocab,
    threshold_single,
    threshold_acc,
    NUM_SPEC: tl.constexpr,  # accept_index.shape[1]: max accepted drafts + 1
    BLOCK_V: tl.constexpr,
):
    bx = tl.program_id(0).to(tl.int64)
    out_ty = predicts_ptr.dtype.element_ty
    acc_ty = accept_index_ptr.dtype.element_ty

    coin = tl.load(uniform_ptr + bx * uniform_stride).to(tl.float32)
    last = tl.load(retrive_index_ptr + bx * index_stride).to(tl.int64)
    tl.store(accept_index_ptr + bx * accept_stride, last.to(acc_ty))
    num_accepted = tl.cast(0, tl.int32)
    row = tl.cast(0, tl.int64)  # node whose q decides the next token
    cur = tl.cast(0, tl.int64)
    prob_acc = tl.cast(0.0, tl.float32)
    level = 1
    go = 1
    while (level < NUM_SPEC) & (go == 1):
        cur = tl.load(retrive_next_token_ptr + bx * next_token_stride + cur).to(tl.int64)
        accepted = 0
        while (cur != -1) & (accepted == 0):
            token = tl.load(candidates_ptr + bx * candidates_stride + cur).to(tl.int64)
            q_ptr = target_probs_ptr + bx * target_stride_b + row * target_stride_n + token
            q_raw = tl.load(q_ptr)
            q = q_raw.to(tl.float32)
            prob_acc += q
            # div_rn: IEEE division as in the CUDA op (Triton's `/` is approximate)
            if (q > 0) & ((coin < tl.math.div_rn(prob_acc, threshold_acc)) | (q >= threshold_single)):
                prob_acc = tl.cast(0.0, tl.float32)
                row = cur
                coin = tl.load(uniform_ptr + bx * uniform_stride + cur).to(tl.float32)
                tl.store(predicts_ptr + last, token.to(out_ty))
                num_accepted += 1
                last = tl.load(retrive_index_ptr + bx * index_stride + cur).to(tl.int64)
                tl.store(accept_index_ptr + bx * accept_stride + num_accepted, last.to(acc_ty))
                accepted = 1
            else:
                tl.store(draft_probs_ptr + bx * draft_stride_b + row * draft_stride_n + token,
                         q_raw.to(draft_probs_ptr.dtype.element_ty))
                cur = tl.load(retrive_next_sibling_ptr + bx * next_sibling_stride + cur).to(tl.int64)
        go = accepted
        level += 1
    tl.store(accept_token_num_ptr + bx, num_accepted.to(accept_token_num_ptr.dtype.element_ty))

    # The draft_probs entries stored above are read back below by other threads.
    tl.debug_barrier()

    coin = tl.load(uniform_final_ptr + bx).to(tl.float32)
    use_draft = num_accepted != NUM_SPEC - 1  # no draft_probs for the bonus token
    q_row = target_probs_ptr + bx * target_stride_b + row * target_stride_n
    p_row = draft_probs_ptr + bx * draft_stride_b + row * draft_stride_n

    total = tl.cast(0.0, tl.float32)
    for v0 in range(0, vocab, BLOCK_V):
        offs = v0 + tl.arange(0, BLOCK_V)
        ok = offs < vocab
        q = tl.load(q_row + offs, mask=ok, other=0.0).to(tl.float32)
        p = tl.load(p_row + offs, mask=ok & use_draft, other=0.0).to(tl.float32)
        total += tl.sum(tl.maximum(q - p, 0.0), axis=0)
    u = coin * total

    sampled = tl.cast(-1, tl.int64)
    last_valid = tl.cast(-1, tl.int64)
    running = tl.cast(0.0, tl.float32)
    v0 = tl.cast(0, tl.int64)
    while (v0 < vocab) & (sampled < 0):
        offs = v0 + tl.arange(0, BLOCK_V)
        ok = offs < vocab
        q = tl.load(q_row + offs, mask=ok, other=0.0).to(tl.float32)
        p = tl.load(p_row + offs, mask=ok & use_draft, other=0.0).to(tl.float32)
        r = tl.maximum(q - p, 0.0)
        hit = (running + tl.cumsum(r, axis=0) > u) & (r > 0)
        first = tl.min(tl.where(hit, offs, vocab), axis=0)
        sampled = tl.where(first < vocab, first, -1).to(tl.int64)
        last_valid = tl.maximum(last_valid, tl.max(tl.where(r > 0, offs, -1), axis=0).to(tl.int64))
        running += tl.sum(r, axis=0)
        v0 += BLOCK_V
    fallback = tl.where(last_valid >= 0, last_valid, vocab - 1)
    sampled = tl.where(sampled >= 0, sampled, fallback)
    tl.store(predicts_ptr + last, sampled.to(out_ty))


def tree_speculative_sampling_target_only(
    predicts: torch.Tensor,  # mutable, [bs * draft_tokens (+ spare slots)]
    accept_index: torch.Tensor,  # mutable, [bs, num_spec_tokens]
    accept_token_num: torch.Tensor,  # mutable, [bs]
    candidates: torch.Tensor,  # [bs, draft_tokens]
    retrive_index: torch.Tensor,
    retrive_next_token: torch.Tensor,
    retrive_next_sibling: torch.Tensor,
    uniform_samples: torch.Tensor,  # [bs, draft_tokens]
    uniform_samples_for_final_sampling: torch.Tensor,  # [bs]
    target_probs: torch.Tensor,  # [bs, draft_tokens, vocab]
    draft_probs: torch.Tensor,  # mutable, [bs, draft_tokens, vocab]
    threshold_single: float = 1.0,
    threshold_acc: float = 1.0,
    deterministic: bool = True,
) -> None:
    bs, num_draft = candidates.shape
    num_spec = accept_index.shape[1]
    vocab = target_probs.shape[-1]
    if num_draft <= 0 or num_spec <= 0 or vocab <= 0:
        raise ValueError("need draft_tokens, accept_index.shape[1] and vocab > 0")
    if not (0.0 <= threshold_single <= 1.0 and 0.0 <= threshold_acc <= 1.0):
        raise ValueError("threshold_single and threshold_acc must lie in [0, 1]")
    # at least bs * draft_tokens: SGLang's V1 EAGLE worker allocates one slot more (never written)
    if not predicts.is_contiguous() or predicts.numel() < bs * num_draft:
        raise ValueError("predicts must be a contiguous tensor of at least bs * draft_tokens entries")
    if target_probs.shape != (bs, num_draft, vocab) or draft_probs.shape != target_probs.shape:
        raise ValueError("target_probs and draft_probs must be [bs, draft_tokens, vocab]")
    if target_probs.stride(2) != 1 or draft_probs.stride(2) != 1:
        raise ValueError("target_probs and draft_probs need a unit vocab stride")
    check_rows(bs, candidates=candidates, retrive_index=retrive_index,
               retrive_next_token=retrive_next_token, retrive_next_sibling=retrive_next_sibling,
               accept_index=accept_index, uniform_samples=uniform_samples)
    if bs == 0:
        return
    _tree_sampling_kernel[(bs,)](
        predicts,
        accept_index,
        accept_token_num,
        candidates,
        retrive_index,
        retrive_next_token,
        retrive_next_sibling,
        uniform_samples,
        uniform_samples_for_final_sampling,
        target_probs,
        draft_probs,
        candidates.stride(0),
        retrive_index.stride(0),
        retrive_next_token.stride(0),
        retrive_next_sibling.stride(0),
        uniform_samples.stride(0),
        accept_index.stride(0),
        target_probs.stride(0),
        target_probs.stride(1),
        draft_probs.stride(0),
        draft_probs.stride(1),
        vocab,
        float(threshold_single),
        max(float(threshold_acc), 1e-9),  # as the CUDA launcher clamps it
        NUM_SPEC=num_spec,
        BLOCK_V=min(triton.next_power_of_2(vocab), 4096),
    )
