"""Triton tree attention (target-verify) vs the plain-torch reference and vs SGLang's own
Triton ``extend_attention_fwd`` on the same TARGET_VERIFY inputs (both interpreted on CPU).

Inputs are laid out as SGLang's Triton backend passes them: prefix slots scattered in a
paged pool (kv_indptr/kv_indices), draft K/V as k/v_extend, FULL_MASK tree masks built by the
EAGLE tree builder (or from random parent arrays), ragged prefixes.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from sglang_eagle3_ext.kernels import tree_reference  # noqa: E402
from sglang_eagle3_ext.kernels.tree_attention import tree_attention_fwd  # noqa: E402
from sglang_eagle3_ext.kernels.tree_attention_reference import tree_attention_reference  # noqa: E402
from sglang_eagle3_ext.kernels.tree_inputs import draft_steps, draft_tree  # noqa: E402

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" else "cuda"
TOL = {torch.float32: 2e-5, torch.float16: 2e-3}


def random_parent_masks(prefix_lens, n, gen):
    """FULL_MASK bytes for random trees: parent[i] < i, each row = the node and its ancestors."""
    rows = []
    for p in prefix_lens:
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i in range(n):
            anc[i, i] = True
            if i:
                anc[i] |= anc[int(torch.randint(0, i, (1,), generator=gen))]
        rows.append(torch.cat([torch.ones(n, p, dtype=torch.bool), anc], 1).flatten())
    return torch.cat(rows)


def eagle_tree_masks(prefix_lens, n, gen, topk=4, steps=3):
    """FULL_MASK as EAGLE builds it (draft loop -> build_tree_kernel_efficient)."""
    bs = len(prefix_lens)
    parent_list, sel, _ = draft_tree(draft_steps(bs, topk, steps, 32, gen), topk, n)
    seq_lens = torch.tensor(prefix_lens)
    mask = torch.ones(int(seq_lens.sum()) * n + n * n * bs, dtype=torch.bool)
    positions = torch.empty(bs * n, dtype=torch.long)
    retrieve = torch.empty(3, bs, n, dtype=torch.long)
    tree_reference.build_tree_kernel_efficient(
        parent_list, sel, seq_lens, mask, positions, retrieve[0], retrieve[1], retrieve[2],
        topk, steps, n, tree_reference.FULL_MASK)
    return mask


def verify_inputs(prefix_lens, n, heads, kv_heads, dim, dtype, seed, tree="random", dv=None):
    """Target-verify inputs: a pool with the prefixes at shuffled slots, draft K/V passed
    separately (and also in the pool after them, as the backend saves them first)."""
    gen = torch.Generator().manual_seed(seed)
    bs, dv = len(prefix_lens), dv or dim
    slots_needed = sum(prefix_lens) + bs * n
    pool = slots_needed + 7
    perm = torch.randperm(pool, generator=gen)
    k_buffer = torch.randn(pool, kv_heads, dim, generator=gen).to(dtype)
    v_buffer = torch.randn(pool, kv_heads, dv, generator=gen).to(dtype)
    q = torch.randn(bs * n, heads, dim, generator=gen).to(dtype)
    kv_indices, used = [], 0
    for p in prefix_lens:
        kv_indices.append(perm[used:used + p])
        used += p + n
    draft_slots = torch.cat([perm[sum(prefix_lens[:b]) + n * b + p:][:n]
                             for b, p in enumerate(prefix_lens)])
    k_extend, v_extend = k_buffer[draft_slots].clone(), v_buffer[draft_slots].clone()
    masks = {"random": random_parent_masks, "eagle": eagle_tree_masks}[tree](prefix_lens, n, gen)
    lens = torch.tensor(prefix_lens)
    return dict(
        q_extend=q, k_extend=k_extend, v_extend=v_extend, k_buffer=k_buffer, v_buffer=v_buffer,
        qo_indptr=torch.arange(0, (bs + 1) * n, n, dtype=torch.int32),
        kv_indptr=torch.cat([torch.zeros(1), lens.cumsum(0)]).to(torch.int32),
        kv_indices=torch.cat(kv_indices).to(torch.int64),
        custom_mask=masks,
        mask_indptr=torch.cat([torch.zeros(1), (n * (lens + n)).cumsum(0)]).to(torch.int32),
    )


def to_dev(inp):
    return {k: v.to(DEVICE) for k, v in inp.items()}


def run_ours(inp, n, **kw):
    d = to_dev(inp)
    o = torch.full((d["q_extend"].shape[0], d["q_extend"].shape[1], d["v_extend"].shape[-1]),
                   float("nan"), dtype=d["q_extend"].dtype, device=DEVICE)
    tree_attention_fwd(d["q_extend"], d["k_extend"], d["v_extend"], o, d["k_buffer"], d["v_buffer"],
                       d["qo_indptr"], d["kv_indptr"], d["kv_indices"], d["custom_mask"], True,
                       d["mask_indptr"], n, **kw)
    return o.cpu()


def reference(inp, **kw):
    return tree_attention_reference(
        inp["q_extend"], inp["k_extend"], inp["v_extend"], inp["k_buffer"], inp["v_buffer"],
        inp["qo_indptr"], inp["kv_indptr"], inp["kv_indices"], inp["custom_mask"], True,
        inp["mask_indptr"], **kw)


def assert_close(got, want, dtype):
    assert not got.isnan().any()
    torch.testing.assert_close(got.float(), want.float(), atol=TOL[dtype], rtol=TOL[dtype])


# (prefix lens (ragged batch), n, q heads, kv heads): groups 1 and 4, prefixes 0/1/37/300
CASES = [
    ([0], 1, 2, 2),
    ([1], 4, 4, 1),
    ([37, 0, 5], 8, 8, 2),
    ([300, 37], 16, 4, 1),
    ([300], 8, 4, 4),
    ([1, 300, 37], 4, 8, 2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("prefix_lens,n,heads,kv_heads", CASES,
                         ids=[f"P{'-'.join(map(str, c[0]))}-n{c[1]}-g{c[2] // c[3]}" for c in CASES])
def test_matches_reference(prefix_lens, n, heads, kv_heads, dtype):
    inp = verify_inputs(prefix_lens, n, heads, kv_heads, 16, dtype, seed=n + len(prefix_lens))
    # small row blocks and splits so several of each run even at test sizes
    got = run_ours(inp, n, num_kv_splits=3, block_rows=16, block_n=16)
    assert_close(got, reference(inp), dtype)


def test_eagle_tree_mask_scales_and_cap():
    """The mask as EAGLE builds it, fp8-style k/v scales (prefix only), logit cap, Lv != Lq."""
    prefix_lens, n = [37, 3], 8
    inp = verify_inputs(prefix_lens, n, 4, 2, 16, torch.float32, seed=1, tree="eagle", dv=8)
    kw = dict(k_scale=0.5, v_scale=2.0, sm_scale=0.3, logit_cap=3.0)
    got = run_ours(inp, n, num_kv_splits=4, block_n=16, **kw)
    assert_close(got, reference(inp, **kw), torch.float32)


def test_masked_draft_tokens_have_no_effect():
    """Changing K/V of draft tokens a row does not see leaves that row unchanged."""
    n = 8
    inp = verify_inputs([5], n, 2, 1, 16, torch.float32, seed=3)
    before = run_ours(inp, n, num_kv_splits=2, block_n=16)
    rows = inp["custom_mask"].view(n, 5 + n)[:, 5:]
    hidden = ~rows[:, n - 1]  # rows that do not attend to the last draft token
    assert hidden.any() and not hidden.all()
    inp["k_extend"][n - 1] += 5.0
    inp["v_extend"][n - 1] -= 3.0
    after = run_ours(inp, n, num_kv_splits=2, block_n=16)
    assert torch.equal(before[hidden], after[hidden])
    assert not torch.allclose(before[~hidden], after[~hidden])


def sglang_extend_attention():
    for mod in ("sglang.kernels.ops.attention.extend_attention",
                "sglang.srt.layers.attention.triton_ops.extend_attention"):
        try:
            return __import__(mod, fromlist=["extend_attention_fwd"]).extend_attention_fwd
        except ImportError:
            continue
    pytest.skip("SGLang's Triton extend_attention_fwd not found")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_matches_sglang_extend_attention(dtype):
    """Drop-in check: SGLang's TARGET_VERIFY call (causal + FULL_MASK, prefix columns
    skipped) on the same inputs gives the same output."""
    extend_attention_fwd = sglang_extend_attention()
    prefix_lens, n, heads, kv_heads = [37, 0, 300], 8, 8, 2
    inp = verify_inputs(prefix_lens, n, heads, kv_heads, 16, dtype, seed=11, tree="eagle")
    d = to_dev(inp)
    theirs = torch.full_like(d["q_extend"], float("nan"))
    extend_attention_fwd(d["q_extend"], d["k_extend"], d["v_extend"], theirs, d["k_buffer"],
                         d["v_buffer"], d["qo_indptr"], d["kv_indptr"], d["kv_indices"],
                         d["custom_mask"], True, d["mask_indptr"], n, 1.0, 1.0)
    ours = run_ours(inp, n, num_kv_splits=4)
    assert_close(ours, theirs.cpu(), dtype)
    assert_close(ours, reference(inp), dtype)
