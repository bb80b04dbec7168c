"""Triton tree attention for EAGLE target-verify: split-KV over the shared prefix, one small
masked pass over the draft tree, log-sum-exp merge.

In target-verify each request b has n_b draft queries; all of them attend to the whole cached
prefix (no mask) and to the draft tokens their tree-mask row allows. SGLang's Triton
``extend_attention_fwd`` streams the prefix serially once per (request, query head, row
block). Here the prefix is read once per (request, KV head, split) for all n_b queries x all
query heads that share the KV head (GQA group, or all heads for absorbed MLA):

* ``_prefix_kernel``  grid (batch, kv_heads x row blocks, splits): each program streams one
  chunk of the prefix and writes a normalised partial output and its log-sum-exp;
* ``_tree_merge_kernel``  grid (batch, kv_heads x row blocks): the n x n draft block under the
  tree mask, then the merge with the prefix partials; writes o.

A query row is (draft token, head in group): row r is token ``r // group``, head
``kv_head * group + r % group``, so one ``tl.dot`` serves every head of the group.

``tree_attention_fwd`` takes ``extend_attention_fwd``'s leading arguments in the same order,
as SGLang's Triton backend passes them in TARGET_VERIFY: kv_indptr/kv_indices cover the prefix
only, the draft K/V come as k_extend/v_extend, custom_mask is the FULL_MASK layout
(``n_b x (P_b + n_b)`` per request at ``mask_indptr[b]``; only the draft columns are read, as
SGLang's ``skip_prefix_custom_mask=True``). kv_indices are token slots, so page size only
changes how the caller filled them. fp8 scales: ``k_scale`` multiplies prefix scores and
``v_scale`` the prefix values, not the draft part (whose K/V are the fresh tensors), as SGLang.
"""

import torch
import triton
import triton.language as tl


@triton.jit
def _load_q(Q, tok_start, tok, head, row_ok, stride_qbs, stride_qh,
            BLOCK_D: tl.constexpr, BLOCK_DPE: tl.constexpr, Lq: tl.constexpr):
    offs_d = tl.arange(0, BLOCK_D)
    base = Q + (tok_start + tok)[:, None] * stride_qbs + head[:, None] * stride_qh
    q = tl.load(base + offs_d[None, :], mask=row_ok[:, None] & (offs_d[None, :] < Lq), other=0.0)
    if BLOCK_DPE > 0:
        offs_dpe = BLOCK_D + tl.arange(0, BLOCK_DPE)
        qpe = tl.load(base + offs_dpe[None, :], mask=row_ok[:, None], other=0.0)
    else:
        qpe = q
    return q, qpe


@triton.jit
def _scores(q, qpe, K, slot, col_ok, kv_head, stride_kbs, stride_kh,
            BLOCK_D: tl.constexpr, BLOCK_DPE: tl.constexpr, Lq: tl.constexpr):
    """q [R, D] . K[slot, kv_head]^T -> [R, N] fp32; K loaded transposed [D, N]."""
    offs_d = tl.arange(0, BLOCK_D)
    base = K + slot[None, :] * stride_kbs + kv_head * stride_kh
    k = tl.load(base + offs_d[:, None], mask=col_ok[None, :] & (offs_d[:, None] < Lq), other=0.0)
    qk = tl.dot(q.to(k.dtype), k, out_dtype=tl.float32)
    if BLOCK_DPE > 0:
        offs_dpe = BLOCK_D + tl.arange(0, BLOCK_DPE)
        kpe = tl.load(base + offs_dpe[:, None], mask=col_ok[None, :], other=0.0)
        qk += tl.dot(qpe.to(kpe.dtype), kpe, out_dtype=tl.float32)
    return qk


@triton.jit
def _rows(pid_rows, group, BLOCK_R: tl.constexpr, row_blocks):
    kv_head = pid_rows // row_blocks
    r = (pid_rows % row_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)
    return kv_head, r // group, kv_head * group + r % group


@triton.jit
def _prefix_kernel(
    Q, K_Buffer, V_Buffer, qo_indptr, kv_indptr, kv_indices, Mid_O, Mid_LSE,
    qk_scale, v_scale, logit_cap, group, row_blocks,
    stride_qbs, stride_qh, stride_kbs, stride_kh, stride_vbs, stride_vh,
    stride_mo_t, stride_mo_h, stride_mo_s, stride_ml_t, stride_ml_h,
    Lq: tl.constexpr, Lv: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DPE: tl.constexpr,
    BLOCK_DV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
    NUM_SPLITS: tl.constexpr, HAS_CAP: tl.constexpr,
):
    b = tl.program_id(0)
    split = tl.program_id(2)
    kv_head, tok, head = _rows(tl.program_id(1), group, BLOCK_R, row_blocks)
    q_start = tl.load(qo_indptr + b)
    row_ok = tok < tl.load(qo_indptr + b + 1) - q_start
    kv_start = tl.load(kv_indptr + b)
    prefix_len = tl.load(kv_indptr + b + 1) - kv_start

    split_len = tl.cdiv(tl.cdiv(prefix_len, NUM_SPLITS), BLOCK_N) * BLOCK_N  # whole tiles
    lo = split * split_len
    hi = tl.minimum(lo + split_len, prefix_len)

    q, qpe = _load_q(Q, q_start, tok, head, row_ok, stride_qbs, stride_qh, BLOCK_D, BLOCK_DPE, Lq)
    offs_dv = tl.arange(0, BLOCK_DV)
    offs_n = tl.arange(0, BLOCK_N)
    acc = tl.zeros([BLOCK_R, BLOCK_DV], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_R], dtype=tl.float32)
    m_i = tl.full([BLOCK_R], -1e20, dtype=tl.float32)  # finite: empty rows stay NaN-free
    for start in range(lo, hi, BLOCK_N):
        col_ok = start + offs_n < hi
        slot = tl.load(kv_indices + kv_start + start + offs_n, mask=col_ok, other=0).to(tl.int64)
        qk = _scores(q, qpe, K_Buffer, slot, col_ok, kv_head, stride_kbs, stride_kh,
                     BLOCK_D, BLOCK_DPE, Lq) * qk_scale
        if HAS_CAP:
            qk = logit_cap * (2 * tl.sigmoid(2 * qk / logit_cap) - 1)  # tanh
        qk = tl.where(col_ok[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.exp(qk - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        v = tl.load(V_Buffer + slot[:, None] * stride_vbs + kv_head * stride_vh + offs_dv[None, :],
                    mask=col_ok[:, None] & (offs_dv[None, :] < Lv), other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, out_dtype=tl.float32)
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new

    empty = l_i == 0
    lse = tl.where(empty, float("-inf"), m_i + tl.log(tl.where(empty, 1.0, l_i)))
    o = acc * v_scale / tl.where(empty, 1.0, l_i)[:, None]
    t = (q_start + tok).to(tl.int64)
    tl.store(Mid_O + t[:, None] * stride_mo_t + head[:, None] * stride_mo_h + split * stride_mo_s
             + offs_dv[None, :], o, mask=row_ok[:, None] & (offs_dv[None, :] < Lv))
    tl.store(Mid_LSE + t * stride_ml_t + head * stride_ml_h + split, lse, mask=row_ok)


@triton.jit
def _tree_merge_kernel(
    Q, K_Extend, V_Extend, O, qo_indptr, kv_indptr, mask_ptr, mask_indptr, Mid_O, Mid_LSE,
    sm_scale, logit_cap, group, row_blocks,
    stride_qbs, stride_qh, stride_kbs, stride_kh, stride_vbs, stride_vh, stride_obs, stride_oh,
    stride_mo_t, stride_mo_h, stride_mo_s, stride_ml_t, stride_ml_h,
    Lq: tl.constexpr, Lv: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DPE: tl.constexpr,
    BLOCK_DV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr,
    NUM_SPLITS: tl.constexpr, HAS_CAP: tl.constexpr, USE_MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
):
    b = tl.program_id(0)
    kv_head, tok, head = _rows(tl.program_id(1), group, BLOCK_R, row_blocks)
    q_start = tl.load(qo_indptr + b)
    n = tl.load(qo_indptr + b + 1) - q_start
    row_ok = tok < n
    prefix_len = tl.load(kv_indptr + b + 1) - tl.load(kv_indptr + b)

    # the n x n draft block under the tree mask
    q, qpe = _load_q(Q, q_start, tok, head, row_ok, stride_qbs, stride_qh, BLOCK_D, BLOCK_DPE, Lq)
    offs_t = tl.arange(0, BLOCK_T)
    col_ok = offs_t < n
    slot = (q_start + offs_t).to(tl.int64)
    qk = _scores(q, qpe, K_Extend, slot, col_ok, kv_head, stride_kbs, stride_kh,
                 BLOCK_D, BLOCK_DPE, Lq) * sm_scale
    if HAS_CAP:
        qk = logit_cap * (2 * tl.sigmoid(2 * qk / logit_cap) - 1)
    keep = row_ok[:, None] & col_ok[None, :]
    if USE_MASK:  # row tok of request b: mask_indptr[b] + tok * (P + n) + P + column
        offs_m = tl.load(mask_indptr + b) + tok[:, None].to(tl.int64) * (prefix_len + n) + prefix_len
        keep &= tl.load(mask_ptr + offs_m + offs_t[None, :], mask=keep, other=0) != 0
    elif IS_CAUSAL:
        keep &= offs_t[None, :] <= tok[:, None]
    qk = tl.where(keep, qk, float("-inf"))
    m_i = tl.maximum(tl.max(qk, 1), -1e20)
    p = tl.exp(qk - m_i[:, None])
    l_i = tl.sum(p, 1)
    offs_dv = tl.arange(0, BLOCK_DV)
    v = tl.load(V_Extend + slot[:, None] * stride_vbs + kv_head * stride_vh + offs_dv[None, :],
                mask=col_ok[:, None] & (offs_dv[None, :] < Lv), other=0.0)
    acc = tl.dot(p.to(v.dtype), v, out_dtype=tl.float32)

    # merge the prefix partials: each is normalised, weighted by exp(its lse - running max)
    t = (q_start + tok).to(tl.int64)
    dv_ok = row_ok[:, None] & (offs_dv[None, :] < Lv)
    if prefix_len > 0:
        for s in range(NUM_SPLITS):
            lse = tl.load(Mid_LSE + t * stride_ml_t + head * stride_ml_h + s, mask=row_ok,
                          other=float("-inf"))
            o_s = tl.load(Mid_O + t[:, None] * stride_mo_t + head[:, None] * stride_mo_h
                          + s * stride_mo_s + offs_dv[None, :], mask=dv_ok, other=0.0)
            m_new = tl.maximum(m_i, lse)
            alpha = tl.exp(m_i - m_new)
            w = tl.exp(lse - m_new)
            acc = acc * alpha[:, None] + o_s * w[:, None]
            l_i = l_i * alpha + w
            m_i = m_new

    o = acc / tl.where(l_i == 0, 1.0, l_i)[:, None]
    tl.store(O + t[:, None] * stride_obs + head[:, None] * stride_oh + offs_dv[None, :],
             o.to(O.dtype.element_ty), mask=dv_ok)


def _split_head_dim(lq):
    """(BLOCK_D, BLOCK_DPE) as SGLang splits them: MLA 576 = 512 + 64 rope, 288, 192."""
    return {576: (512, 64), 288: (256, 32), 192: (128, 64)}.get(lq, (triton.next_power_of_2(lq), 0))


def tree_attention_fwd(
    q_extend, k_extend, v_extend, o_extend, k_buffer, v_buffer, qo_indptr, kv_indptr,
    kv_indices, custom_mask, is_causal, mask_indptr, max_len_extend, k_scale=1.0, v_scale=1.0,
    sm_scale=None, logit_cap=0.0, page_size=1, num_kv_splits=8, block_rows=None, block_n=None,
):
    """Writes o_extend [tokens, q_heads, Lv]. Arguments as ``extend_attention_fwd`` in
    TARGET_VERIFY (see the module docstring); k/v_buffer [slots, kv_heads, dim] as SGLang's
    pools hand them out (MLA: v_buffer is the first Lv columns of k_buffer). ``page_size`` is
    accepted for the same call shape: kv_indices are token slots at any page size.
    ``num_kv_splits`` prefix chunks per request, ``block_rows`` query rows (tokens x group
    heads) per program, ``block_n`` prefix tokens per tile (defaults: 64/64, 32/32 for the
    576-wide MLA rows; not yet tuned on a GPU)."""
    if k_buffer.dim() != 3 or v_buffer.dim() != 3:
        raise ValueError(f"k/v_buffer must be [slots, kv_heads, dim]; got {tuple(k_buffer.shape)}")
    tokens, heads, lq = q_extend.shape
    kv_heads, lv = k_extend.shape[1], v_extend.shape[-1]
    if heads % kv_heads or k_buffer.shape[1] != kv_heads:
        raise ValueError(f"q heads {heads} must be a multiple of kv heads {kv_heads} "
                         f"(k_buffer has {k_buffer.shape[1]})")
    if custom_mask is not None and mask_indptr is None:
        raise ValueError("custom_mask needs mask_indptr (FULL_MASK layout, n x (prefix + n) per request)")
    for name, t in (("q_extend", q_extend), ("k_extend", k_extend), ("v_extend", v_extend),
                    ("o_extend", o_extend), ("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} needs a unit stride in its last dim")
    group = heads // kv_heads
    block_rows = block_rows or (64 if lq <= 256 else 32)
    block_n = block_n or (64 if lq <= 256 else 32)
    batch = qo_indptr.numel() - 1
    block_d, block_dpe = _split_head_dim(lq)
    block_dv = triton.next_power_of_2(lv)
    rows = int(max_len_extend) * group
    block_r = max(16, min(triton.next_power_of_2(rows), triton.next_power_of_2(block_rows)))
    row_blocks = triton.cdiv(rows, block_r)
    block_t = max(16, triton.next_power_of_2(int(max_len_extend)))
    # 576-wide MLA rows: a [BLOCK_R, 512] fp32 accumulator spills to local memory at 4 warps
    # (benchmarks/results/compile_sm90a.md); 8 warps hold it in registers
    num_warps = 8 if block_dv >= 512 else 4
    sm_scale = sm_scale or lq ** -0.5
    has_cap = logit_cap > 0

    mid_o = torch.empty(tokens, heads, num_kv_splits, lv, dtype=torch.float32, device=q_extend.device)
    mid_lse = torch.empty(tokens, heads, num_kv_splits, dtype=torch.float32, device=q_extend.device)
    common = dict(Lq=lq, Lv=lv, BLOCK_D=block_d, BLOCK_DPE=block_dpe, BLOCK_DV=block_dv,
                  BLOCK_R=block_r, NUM_SPLITS=num_kv_splits, HAS_CAP=has_cap, num_warps=num_warps)
    _prefix_kernel[(batch, kv_heads * row_blocks, num_kv_splits)](
        q_extend, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, mid_o, mid_lse,
        sm_scale * k_scale, v_scale, logit_cap, group, row_blocks,
        q_extend.stride(0), q_extend.stride(1), k_buffer.stride(0), k_buffer.stride(1),
        v_buffer.stride(0), v_buffer.stride(1),
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        BLOCK_N=block_n, **common,
    )
    use_mask = custom_mask is not None
    _tree_merge_kernel[(batch, kv_heads * row_blocks)](
        q_extend, k_extend, v_extend, o_extend, qo_indptr, kv_indptr,
        custom_mask if use_mask else qo_indptr, mask_indptr if use_mask else qo_indptr,
        mid_o, mid_lse, sm_scale, logit_cap, group, row_blocks,
        q_extend.stride(0), q_extend.stride(1), k_extend.stride(0), k_extend.stride(1),
        v_extend.stride(0), v_extend.stride(1), o_extend.stride(0), o_extend.stride(1),
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        BLOCK_T=block_t, USE_MASK=use_mask, IS_CAUSAL=bool(is_causal), **common,
    )
    return o_extend
