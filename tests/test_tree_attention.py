"""Triton tree attention (target-verify) vs the plain-torch reference and vs SGLang's own
Triton ``extend_attention_fwd`` on the same TARGET_VERIFY inputs (both interpreted on CPU).

Inputs are laid out as SGLang's Triton backend passes them: prefix slots scattered in a
paged pool (kv_indptr/kv_indices), draft K/V as k/v_extend, FULL_MASK tree masks built by the
EAGLE tree builder (or from random parent arrays), ragged prefixes.
"""

import inspect
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import require_upstream  # noqa: E402

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


def eagle_tree_masks(prefix_lens, n, gen, steps=3):
    """FULL_MASK as EAGLE builds it (draft loop -> build_tree_kernel_efficient)."""
    bs, topk = len(prefix_lens), 4 if n <= 32 else 8
    parent_list, sel, _ = draft_tree(draft_steps(bs, topk, steps, 32, gen), topk, n)
    seq_lens = torch.tensor(prefix_lens)
    mask = torch.ones(int(seq_lens.sum()) * n + n * n * bs, dtype=torch.bool)
    positions = torch.empty(bs * n, dtype=torch.long)
    retrieve = torch.empty(3, bs, n, dtype=torch.long)
    tree_reference.build_tree_kernel_efficient(
        parent_list, sel, seq_lens, mask, positions, retrieve[0], retrieve[1], retrieve[2],
        topk, steps, n, tree_reference.FULL_MASK)
    return mask


def req_to_token_rows(lens, page_size, gen):
    """Per request its token slots as SGLang's req_to_token holds them: whole pages taken
    from a shuffled free list, slot = page * page_size + offset."""
    pages = torch.randperm(sum(-(-x // page_size) for x in lens) + 3, generator=gen)
    rows, used = [], 0
    for x in lens:
        own = pages[used:used + -(-x // page_size)]
        used += own.numel()
        pos = torch.arange(x)
        rows.append(own[pos // page_size] * page_size + pos % page_size)
    return rows, int(pages.max() + 1) * page_size


def verify_inputs(prefix_lens, n, heads, kv_heads, dim, dtype, seed, tree="random", dv=None,
                  page_size=1, mla=False):
    """Target-verify inputs: prefixes at their req_to_token slots of a paged pool, draft K/V
    passed as k/v_extend and also stored at the slots after the prefix (the backend saves
    them before attention). mla: one latent KV head, V = the first dv columns of K."""
    gen = torch.Generator().manual_seed(seed)
    bs, dv = len(prefix_lens), dv or dim
    rows, pool = req_to_token_rows([p + n for p in prefix_lens], page_size, gen)
    k_buffer = torch.randn(pool, kv_heads, dim, generator=gen).to(dtype)
    v_buffer = k_buffer[..., :dv] if mla else torch.randn(pool, kv_heads, dv, generator=gen).to(dtype)
    q = torch.randn(bs * n, heads, dim, generator=gen).to(dtype)
    draft_slots = torch.cat([r[p:] for r, p in zip(rows, prefix_lens)])
    k_extend = k_buffer[draft_slots]
    v_extend = k_extend[..., :dv] if mla else v_buffer[draft_slots]
    masks = {"random": random_parent_masks, "eagle": eagle_tree_masks}[tree](prefix_lens, n, gen)
    lens = torch.tensor(prefix_lens)
    return dict(
        q_extend=q, k_extend=k_extend, v_extend=v_extend, k_buffer=k_buffer, v_buffer=v_buffer,
        qo_indptr=torch.arange(0, (bs + 1) * n, n, dtype=torch.int32),
        kv_indptr=torch.cat([torch.zeros(1), lens.cumsum(0)]).to(torch.int32),
        kv_indices=torch.cat([r[:p] for r, p in zip(rows, prefix_lens)]).to(torch.int64),
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
    require_upstream(None, "SGLang's Triton extend_attention_fwd")


# (id, prefix lens, n, q heads, kv heads, head dim, v dim, page size, mla)
SGLANG_CASES = [
    ("gqa4-page1", [37, 0, 300], 8, 8, 2, 16, 16, 1, False),
    ("gqa2-page16", [300, 37], 6, 4, 2, 16, 16, 16, False),
    ("mla-absorbed", [37, 130], 4, 4, 1, 576, 512, 1, True),  # latent 512 + rope 64
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", SGLANG_CASES, ids=[c[0] for c in SGLANG_CASES])
def test_matches_sglang_extend_attention(case, dtype):
    """Drop-in check: SGLang's TARGET_VERIFY call (causal + FULL_MASK, prefix columns
    skipped) on the same inputs gives the same output, and both match the reference."""
    extend_attention_fwd = sglang_extend_attention()
    _, prefix_lens, n, heads, kv_heads, dim, dv, page_size, mla = case
    inp = verify_inputs(prefix_lens, n, heads, kv_heads, dim, dtype, seed=11, tree="eagle",
                        dv=dv, page_size=page_size, mla=mla)
    d = to_dev(inp)
    theirs = torch.full((d["q_extend"].shape[0], heads, dv), float("nan"), dtype=dtype, device=DEVICE)
    paged = {"page_size": page_size} if "page_size" in inspect.signature(extend_attention_fwd).parameters else {}
    extend_attention_fwd(d["q_extend"], d["k_extend"], d["v_extend"], theirs, d["k_buffer"],
                         d["v_buffer"], d["qo_indptr"], d["kv_indptr"], d["kv_indices"],
                         d["custom_mask"], True, d["mask_indptr"], n, 1.0, 1.0, **paged)
    ours = run_ours(inp, n, page_size=page_size, num_kv_splits=4)
    assert_close(ours, theirs.cpu(), dtype)
    assert_close(ours, reference(inp), dtype)


def test_long_prefix_wide_tree():
    """n = 64 draft tokens (EAGLE builder, topk 8) over a 2,000-token prefix, page size 16."""
    n = 64
    inp = verify_inputs([2000], n, 2, 1, 16, torch.float32, seed=5, tree="eagle", page_size=16)
    got = run_ours(inp, n, num_kv_splits=8, block_rows=32, block_n=64)
    assert_close(got, reference(inp), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_mla_absorbed_many_heads(dtype):
    """Absorbed MLA with 16 query heads on the one latent head: 8 x 16 rows over two row
    blocks, V read as the first 512 columns of the 576-wide K buffer."""
    n = 8
    inp = verify_inputs([37, 200], n, 16, 1, 576, dtype, seed=7, tree="eagle", dv=512, mla=True)
    got = run_ours(inp, n, num_kv_splits=4, block_rows=64)
    assert_close(got, reference(inp), dtype)


def test_bad_shapes_are_named():
    inp = verify_inputs([5], 4, 6, 4, 16, torch.float32, seed=0)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        run_ours(inp, 4)
