"""Plain-torch tree attention for EAGLE target-verify: the semantics the Triton kernel must match.

Same inputs as SGLang's ``extend_attention_fwd`` in TARGET_VERIFY mode. Request b has n_b
draft queries (rows ``qo_indptr[b]:qo_indptr[b+1]`` of q/k/v_extend) and a prefix of P_b
cached tokens whose pool slots are ``kv_indices[kv_indptr[b]:kv_indptr[b+1]]``. Each query
sees the whole prefix and the draft tokens its row of the tree mask allows. The mask is
SGLang's FULL_MASK layout: request b owns ``n_b x (P_b + n_b)`` bytes at ``mask_indptr[b]``,
row-major; only the last n_b columns are read (the prefix columns are all ones there).
"""

import torch


def dense_mask(custom_mask, mask_indptr, b, prefix_len, n, is_causal):
    """[n, P + n] bool: the prefix columns all on, the draft columns from the tree mask."""
    mask = torch.ones(n, prefix_len + n, dtype=torch.bool)
    if custom_mask is not None:
        start = int(mask_indptr[b])
        rows = custom_mask.view(-1)[start:start + n * (prefix_len + n)].view(n, prefix_len + n)
        mask[:, prefix_len:] = rows[:, prefix_len:].cpu() != 0
    elif is_causal:
        mask[:, prefix_len:] = torch.ones(n, n, dtype=torch.bool).tril()
    return mask


def tree_attention_reference(q_extend, k_extend, v_extend, k_buffer, v_buffer, qo_indptr,
                             kv_indptr, kv_indices, custom_mask, is_causal, mask_indptr,
                             k_scale=1.0, v_scale=1.0, sm_scale=None, logit_cap=0.0):
    """Returns o [tokens, q_heads, Lv] in q_extend's dtype. k/v_buffer: [slots, kv_heads, dim]."""
    heads, lq = q_extend.shape[1], q_extend.shape[2]
    group = heads // k_extend.shape[1]
    sm_scale = sm_scale or lq ** -0.5
    out = torch.empty(q_extend.shape[0], heads, v_extend.shape[-1], dtype=q_extend.dtype)
    for b in range(qo_indptr.numel() - 1):
        q0, q1 = int(qo_indptr[b]), int(qo_indptr[b + 1])
        slots = kv_indices[int(kv_indptr[b]):int(kv_indptr[b + 1])].long().cpu()
        n, prefix_len = q1 - q0, slots.numel()
        k_pre = k_buffer.cpu()[slots].float() * k_scale
        v_pre = v_buffer.cpu()[slots].float() * v_scale
        k = torch.cat([k_pre, k_extend[q0:q1].cpu().float()])  # [P + n, kv_heads, Lq]
        v = torch.cat([v_pre, v_extend[q0:q1].cpu().float()])
        k = k.repeat_interleave(group, dim=1)  # GQA: query head h reads kv head h // group
        v = v.repeat_interleave(group, dim=1)
        q = q_extend[q0:q1].cpu().float()
        scores = torch.einsum("qhd,khd->hqk", q, k) * sm_scale
        if logit_cap > 0:
            scores = logit_cap * torch.tanh(scores / logit_cap)
        mask = dense_mask(custom_mask, mask_indptr, b, prefix_len, n, is_causal)
        scores = scores.masked_fill(~mask, float("-inf"))
        out[q0:q1] = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).to(out.dtype)
    return out
