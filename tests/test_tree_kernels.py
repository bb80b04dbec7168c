"""Triton EAGLE tree ops vs the plain-torch reference, SGLang's own Triton ops,
hand-written trees with known answers, and the exact target distribution.

CPU by default (TRITON_INTERPRET=1, set before Triton is imported). With
TRITON_INTERPRET=0 and a GPU the same tests run on the device.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import import_or_none as _module, require_upstream  # noqa: E402

from sglang_eagle3_ext.kernels import (  # noqa: E402
    build_tree_kernel_efficient,
    tree_speculative_sampling_target_only,
    verify_tree_greedy,
)
from sglang_eagle3_ext.kernels import tree_reference as ref  # noqa: E402
from sglang_eagle3_ext.kernels.tree_inputs import draft_steps, draft_tree, tree_children  # noqa: E402

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" else "cuda"
FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING = 0, 1, 2
VOCAB = 32

# (topk, steps, draft tokens, batch): topk 1..8, steps 1..8, up to 64 tokens, batch up to 32
CASES = [
    (1, 1, 2, 3),
    (1, 8, 9, 32),
    (2, 3, 8, 5),
    (3, 5, 20, 7),
    (4, 4, 32, 16),
    (5, 6, 48, 2),
    (6, 2, 30, 9),
    (7, 7, 64, 3),
    (8, 8, 64, 32),
    (8, 1, 9, 4),
]
CASE_IDS = [f"topk{k}-steps{s}-n{n}-bs{b}" for k, s, n, b in CASES]


# ---------------------------------------------------------------- draft trees


def random_case(topk, steps, n, bs, seed):
    gen = torch.Generator().manual_seed(seed)
    parent_list, sel, tokens = draft_tree(draft_steps(bs, topk, steps, VOCAB, gen), topk, n)
    seq_lens = torch.randint(1, 40, (bs,), generator=gen)  # ragged
    bonus = torch.randint(0, VOCAB, (bs, 1), generator=gen)
    candidates = torch.cat([bonus, tokens], dim=1)
    return parent_list, sel, seq_lens, candidates, gen


def new_mask(seq_lens, n, mode):
    bs = seq_lens.numel()
    if mode == FULL_MASK:  # as eagle_utils.build_tree_kernel_efficient allocates them
        return torch.ones(int(seq_lens.sum()) * n + n * n * bs, dtype=torch.bool)
    if mode == QLEN_ONLY:
        return torch.ones(n * n * bs, dtype=torch.bool)
    packed = [torch.uint8, torch.uint16, torch.uint32][(n > 8) + (n > 16)]
    return torch.zeros(n * bs, dtype=packed)


def build(fn, parent_list, sel, seq_lens, topk, steps, n, mode, fill=-1):
    """Run a build op on fresh buffers; returns (mask bytes, positions, retrive[3])."""
    bs = seq_lens.numel()
    dev = DEVICE if fn is not ref.build_tree_kernel_efficient else "cpu"
    mask = new_mask(seq_lens, n, mode).to(dev)
    positions = torch.full((bs * n,), -7, dtype=torch.long, device=dev)
    retrieve = torch.full((3, bs, n), fill, dtype=torch.long, device=dev)
    fn(parent_list.to(dev), sel.to(dev), seq_lens.to(dev), mask, positions,
       retrieve[0], retrieve[1], retrieve[2], topk, steps, n, mode)
    return mask.view(-1).view(torch.uint8).cpu(), positions.cpu(), retrieve.cpu()


def assert_same(a, b):
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def greedy_targets(candidates, retrieve, gen, follow=0.8):
    """target_predict that usually picks one of the node's children (long accepts)."""
    bs, n = candidates.shape
    target = torch.randint(0, VOCAB, (bs, n), generator=gen)
    follow_draw = torch.rand(bs, n, generator=gen)
    for b in range(bs):
        children = tree_children(retrieve[1, b].tolist(), retrieve[2, b].tolist())
        for node, kids in enumerate(children):
            if kids and follow_draw[b, node] < follow:
                pick = kids[int(torch.randint(0, len(kids), (1,), generator=gen))]
                target[b, node] = candidates[b, pick]
    return target


def verify(fn, candidates, retrieve, target, num_spec, spare=0):
    bs, n = candidates.shape
    dev = DEVICE if fn is not ref.verify_tree_greedy else "cpu"
    predicts = torch.zeros(bs * n + spare, dtype=torch.int32, device=dev)
    accept_index = torch.full((bs, num_spec), -1, dtype=torch.int32, device=dev)
    accept_num = torch.full((bs,), -5, dtype=torch.int32, device=dev)
    r = retrieve.to(dev)
    fn(predicts, accept_index, accept_num, candidates.to(dev), r[0], r[1], r[2], target.to(dev))
    return predicts.cpu(), accept_index.cpu(), accept_num.cpu()


def sample(fn, candidates, retrieve, coins, final_coins, target_probs, num_spec, **thresholds):
    bs, n = candidates.shape
    dev = DEVICE if fn is not ref.tree_speculative_sampling_target_only else "cpu"
    predicts = torch.zeros(bs * n, dtype=torch.int32, device=dev)
    accept_index = torch.full((bs, num_spec), -1, dtype=torch.int32, device=dev)
    accept_num = torch.full((bs,), -5, dtype=torch.int32, device=dev)
    draft_probs = torch.zeros_like(target_probs, device=dev)
    r = retrieve.to(dev)
    fn(predicts, accept_index, accept_num, candidates.to(dev), r[0], r[1], r[2],
       coins.to(dev), final_coins.to(dev), target_probs.to(dev), draft_probs, **thresholds)
    return predicts.cpu(), accept_index.cpu(), accept_num.cpu(), draft_probs.cpu()


def dyadic_probs(bs, n, vocab, gen):
    """Probabilities that are multiples of a power of two: every partial sum is
    exact in fp32, so any summation order gives the same bits."""
    w = torch.randint(0, 8, (bs, n, vocab), generator=gen) * (torch.rand(bs, n, vocab, generator=gen) < 0.5)
    scale = 2.0 ** torch.ceil(torch.log2(w.sum(-1, keepdim=True).clamp_min(1).float()))
    return (w / scale).float()


# ---------------------------------------------------------- the input mirror


def test_draft_tree_mirror_matches_sglang():
    spec_utils = require_upstream(_module("sglang.srt.speculative.spec_utils"), "spec_utils")
    eagle_utils = require_upstream(_module("sglang.srt.speculative.eagle_utils"), "eagle_utils")
    first = spec_utils._select_top_k_tokens_first
    later = spec_utils._select_top_k_tokens_later
    later = getattr(later, "_torchdynamo_orig_callable", later)  # skip torch.compile
    for topk, steps, n in [(1, 4, 5), (3, 4, 12), (8, 3, 40)]:
        gen = torch.Generator().manual_seed(topk)
        outs = draft_steps(4, topk, steps, VOCAB, gen)
        scores, lists = None, ([], [], [])
        for i, (p, idx) in enumerate(outs):
            if i == 0:
                _, _, scores, info = first(p, idx, None, topk)
            else:
                _, _, scores, info = later(i, p, idx, None, scores, topk)
            for acc, part in zip(lists, info):
                acc.append(part)
        theirs = eagle_utils.organize_draft_results(*lists, n)
        assert_same(draft_tree(outs, topk, n), theirs)


# ------------------------------------------------------------------- build


@pytest.mark.parametrize("mode", [FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING])
@pytest.mark.parametrize("topk,steps,n,bs", CASES, ids=CASE_IDS)
def test_build_matches_reference(topk, steps, n, bs, mode):
    if mode == QLEN_ONLY_BITPACKING and n > 32:
        pytest.skip("bit-packed masks hold at most 32 tokens")
    parent_list, sel, seq_lens, _, _ = random_case(topk, steps, n, bs, seed=n * 100 + topk)
    args = (parent_list, sel, seq_lens, topk, steps, n, mode)
    expected = build(ref.build_tree_kernel_efficient, *args)
    assert_same(build(build_tree_kernel_efficient, *args), expected)
    if mode == QLEN_ONLY:
        # every retrieval entry is written: garbage-filled buffers give the same result
        assert_same(build(build_tree_kernel_efficient, *args, fill=12345), expected)
    # sanity of the reference itself: a real tree, every node linked once
    retrieve = expected[2]
    for b in range(bs):
        kids = tree_children(retrieve[1, b].tolist(), retrieve[2, b].tolist())
        assert sorted(k for ks in kids for k in ks) == list(range(1, n))


def sglang_triton_op(name):
    """SGLang's own Triton version of an op (its XPU path): spec_tree.py in
    0.5.23, eagle_utils.py in older releases such as 0.5.16."""
    for module in ("sglang.kernels.ops.speculative.spec_tree", "sglang.srt.speculative.eagle_utils"):
        try:
            op = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            continue
        if op is not None:
            return op
    require_upstream(None, name)


# Cases small enough for upstream's scalar-loop kernel under the interpreter.
SMALL = [(1, 3, 4, 2), (2, 3, 8, 3), (4, 2, 10, 2), (3, 4, 16, 2)]


@pytest.mark.parametrize("mode", [FULL_MASK, QLEN_ONLY])
@pytest.mark.parametrize("topk,steps,n,bs", SMALL)
def test_build_matches_sglang_triton(topk, steps, n, bs, mode):
    upstream = sglang_triton_op("sgl_build_tree_kernel_triton")
    parent_list, sel, seq_lens, _, _ = random_case(topk, steps, n, bs, seed=7 + n)
    args = (parent_list, sel, seq_lens, topk, steps, n, mode)
    assert_same(build(build_tree_kernel_efficient, *args), build(upstream, *args))


# root(0) -> 1, 2; 1 -> 3, 4; 2 -> 5; 4 -> 6   (topk 2, 3 steps, 7 tokens)
HAND_PARENTS = torch.tensor([[-1, 0, 1, 3, 5]])
HAND_SELECTED = torch.tensor([[0, 1, 2, 3, 4, 6]])
HAND_NEXT_TOKEN = [1, 3, 5, -1, 6, -1, -1]
HAND_NEXT_SIBLING = [-1, 2, -1, 4, -1, -1, -1]
HAND_DEPTH = [0, 1, 1, 2, 2, 2, 3]
HAND_ATTEND = [{0}, {0, 1}, {0, 2}, {0, 1, 3}, {0, 1, 4}, {0, 2, 5}, {0, 1, 4, 6}]


def test_build_hand_tree():
    n, seq_lens = 7, torch.tensor([5, 2])  # two requests, ragged
    parents, sel = HAND_PARENTS.repeat(2, 1), HAND_SELECTED.repeat(2, 1)
    rows = torch.tensor([[int(k in a) for k in range(n)] for a in HAND_ATTEND], dtype=torch.uint8)
    for mode in (FULL_MASK, QLEN_ONLY, QLEN_ONLY_BITPACKING):
        mask, positions, retrieve = build(build_tree_kernel_efficient, parents, sel, seq_lens, 2, 3, n, mode)
        assert retrieve[0].tolist() == [list(range(7)), list(range(7, 14))]
        assert retrieve[1].tolist() == [HAND_NEXT_TOKEN] * 2
        assert retrieve[2].tolist() == [HAND_NEXT_SIBLING] * 2
        assert positions.tolist() == [5 + d for d in HAND_DEPTH] + [2 + d for d in HAND_DEPTH]
        if mode == QLEN_ONLY:
            assert torch.equal(mask.view(2, n, n), torch.stack([rows, rows]))
        elif mode == QLEN_ONLY_BITPACKING:
            assert mask.tolist() == [sum(1 << k for k in a) for a in HAND_ATTEND] * 2
        else:
            # request 0: 7 rows of 5 + 7 bytes; request 1 after it: rows of 2 + 7
            first = mask[: 7 * 12].view(7, 12)
            second = mask[7 * 12:].view(7, 9)
            assert torch.equal(first[:, 5:], rows) and bool(first[:, :5].all())
            assert torch.equal(second[:, 2:], rows) and bool(second[:, :2].all())


def test_build_rejects_what_it_cannot_do():
    parents, sel, seq = HAND_PARENTS, HAND_SELECTED, torch.tensor([3])
    with pytest.raises(ValueError):
        build(build_tree_kernel_efficient, parents, sel, seq, 2, 3, 7, 3)
    sel40 = torch.arange(39).unsqueeze(0)
    with pytest.raises(ValueError, match="32"):
        build_tree_kernel_efficient(
            parents, sel40, seq, torch.zeros(40, dtype=torch.uint32), torch.empty(40, dtype=torch.long),
            *torch.full((3, 1, 40), -1, dtype=torch.long), 8, 3, 40, QLEN_ONLY_BITPACKING)


# ------------------------------------------------------------------- verify


@pytest.mark.parametrize("topk,steps,n,bs", CASES, ids=CASE_IDS)
def test_verify_matches_reference(topk, steps, n, bs):
    parent_list, sel, seq_lens, candidates, gen = random_case(topk, steps, n, bs, seed=3 * n + topk)
    _, _, retrieve = build(ref.build_tree_kernel_efficient, parent_list, sel, seq_lens, topk, steps, n, QLEN_ONLY)
    target = greedy_targets(candidates, retrieve, gen)
    got = verify(verify_tree_greedy, candidates, retrieve, target, steps + 1)
    expected = verify(ref.verify_tree_greedy, candidates, retrieve, target, steps + 1)
    assert_same(got, expected)
    if steps > 1 and bs > 2:
        assert expected[2].max() > 1  # the targets do lead deep into the tree


@pytest.mark.parametrize("topk,steps,n,bs", SMALL)
def test_verify_matches_sglang_triton(topk, steps, n, bs):
    upstream = sglang_triton_op("verify_tree_greedy_triton")

    parent_list, sel, seq_lens, candidates, gen = random_case(topk, steps, n, bs * 2, seed=11 + n)
    _, _, retrieve = build(ref.build_tree_kernel_efficient, parent_list, sel, seq_lens, topk, steps, n, QLEN_ONLY)
    target = greedy_targets(candidates, retrieve, gen)
    assert_same(verify(verify_tree_greedy, candidates, retrieve, target, steps + 1),
                verify(upstream, candidates, retrieve, target, steps + 1))


def hand_tree_batch(num_requests):
    """The hand tree (tokens 10 + node) for each request, built by the reference."""
    n = 7
    _, _, retrieve = build(ref.build_tree_kernel_efficient, HAND_PARENTS.repeat(num_requests, 1),
                           HAND_SELECTED.repeat(num_requests, 1), torch.full((num_requests,), 4), 2, 3, n,
                           QLEN_ONLY)
    candidates = (10 + torch.arange(n)).repeat(num_requests, 1)
    return candidates, retrieve


# target[node] = what the target model predicts after that node; 99 / 77 / 55 / 42 are misses
HAND_SCENARIOS = {
    # name: (target per node, accepted nodes, predicts at root + accepted nodes)
    "full accept": ({0: 11, 1: 14, 4: 16, 6: 99}, [1, 4, 6], [11, 14, 16, 99]),
    "miss at root": ({0: 77}, [], [77]),
    "miss at depth 2": ({0: 11, 1: 55}, [1], [11, 55]),
    "second sibling branch": ({0: 12, 2: 15, 5: 42}, [2, 5], [12, 15, 42]),
}


def hand_targets(candidates):
    """The target's token at each node, one request per HAND_SCENARIOS entry (98 elsewhere)."""
    target = torch.full(candidates.shape, 98)
    for b, (tgt, _, _) in enumerate(HAND_SCENARIOS.values()):
        for node, tok in tgt.items():
            target[b, node] = tok
    return target


def test_verify_hand_trees():
    candidates, retrieve = hand_tree_batch(len(HAND_SCENARIOS))
    n = candidates.shape[1]
    target = hand_targets(candidates)
    for fn in (verify_tree_greedy, ref.verify_tree_greedy):
        predicts, accept_index, accept_num = verify(fn, candidates, retrieve, target, 4)
        for b, (name, (_, path, preds)) in enumerate(HAND_SCENARIOS.items()):
            ids = [b * n + i for i in [0] + path]
            assert accept_num[b] == len(path), name
            assert accept_index[b].tolist() == ids + [-1] * (3 - len(path)), name
            assert predicts[ids].tolist() == preds, name
            others = [b * n + i for i in range(n) if b * n + i not in ids]
            assert predicts[others].eq(0).all(), name  # untouched off the path


def test_verify_accepts_a_spare_predicts_slot():
    """SGLang's V1 EAGLE worker (0.5.10, 0.5.13) allocates predicts with one slot more."""
    candidates, retrieve = hand_tree_batch(len(HAND_SCENARIOS))
    target = hand_targets(candidates)
    for fn in (verify_tree_greedy, ref.verify_tree_greedy):
        exact = verify(fn, candidates, retrieve, target, 4)
        spare = verify(fn, candidates, retrieve, target, 4, spare=1)
        assert torch.equal(spare[0][:-1], exact[0]) and spare[0][-1] == 0
        assert all(torch.equal(a, b) for a, b in zip(spare[1:], exact[1:]))


# ------------------------------------------------------------------ sampling


SAMPLING_CASES = [(1, 4, 5, 6, 32), (2, 3, 8, 5, 32), (4, 4, 24, 8, 64), (8, 3, 40, 3, 5000)]


@pytest.mark.parametrize("thresholds", [(1.0, 1.0), (0.3, 0.6)], ids=["exact", "relaxed"])
@pytest.mark.parametrize("topk,steps,n,bs,vocab", SAMPLING_CASES)
def test_sampling_matches_reference(topk, steps, n, bs, vocab, thresholds):
    parent_list, sel, seq_lens, candidates, gen = random_case(topk, steps, n, bs, seed=5 * n + topk)
    _, _, retrieve = build(ref.build_tree_kernel_efficient, parent_list, sel, seq_lens, topk, steps, n, QLEN_ONLY)
    target_probs = dyadic_probs(bs, n, vocab, gen)
    # make the drafts likely under the target so that walks go deep
    target_probs[:, :, :VOCAB] += 2.0 ** -4
    coins = torch.rand(bs, n, generator=gen)
    final_coins = torch.rand(bs, generator=gen)
    kw = dict(threshold_single=thresholds[0], threshold_acc=thresholds[1])
    args = (candidates, retrieve, coins, final_coins, target_probs, steps + 1)
    expected = sample(ref.tree_speculative_sampling_target_only, *args, **kw)
    assert_same(sample(tree_speculative_sampling_target_only, *args, **kw), expected)
    assert expected[3].count_nonzero() > 0  # some drafts were rejected (draft_probs written)


def test_sampling_one_hot_target_is_greedy():
    candidates, retrieve = hand_tree_batch(len(HAND_SCENARIOS))
    target = hand_targets(candidates)
    target_probs = torch.nn.functional.one_hot(target, 100).float()
    bs, n = candidates.shape
    gen = torch.Generator().manual_seed(0)
    got = sample(tree_speculative_sampling_target_only, candidates, retrieve, torch.rand(bs, n, generator=gen),
                 torch.rand(bs, generator=gen), target_probs, 4)
    assert_same(got[:3], verify(ref.verify_tree_greedy, candidates, retrieve, target, 4))


def test_sampling_never_accepts_zero_target_mass():
    # root's children carry tokens 11 and 12; q(11) = 0, q(12) = 0.5, coin 0
    candidates, retrieve = hand_tree_batch(1)
    target_probs = torch.zeros(1, 7, 16)
    target_probs[0, :, 3] = 1.0
    target_probs[0, 0, 12] = 0.5
    target_probs[0, 0, 3] = 0.5
    coins = torch.zeros(1, 7)
    for fn in (tree_speculative_sampling_target_only, ref.tree_speculative_sampling_target_only):
        predicts, accept_index, accept_num, draft_probs = sample(
            fn, candidates, retrieve, coins, torch.zeros(1), target_probs, 4)
        assert accept_index[0, :2].tolist() == [0, 2]  # node 2 (token 12), not node 1
        assert predicts[0] == 12
        # node 2's only child (token 15) has q = 0 there: rejected, final draw from q
        assert accept_num[0] == 1 and predicts[2] == 3


def test_sampling_threshold_single_accepts_likely_drafts():
    candidates, retrieve = hand_tree_batch(1)
    target_probs = torch.full((1, 7, 16), 1 / 16)
    target_probs[0, 0, :] = 0.0
    target_probs[0, 0, 11] = 0.4  # node 1
    target_probs[0, 0, 0] = 0.6
    coins = torch.full((1, 7), 0.99)  # would reject node 1 under exact sampling
    kw = dict(threshold_single=0.35, threshold_acc=1.0)
    for fn in (tree_speculative_sampling_target_only, ref.tree_speculative_sampling_target_only):
        _, accept_index, _, _ = sample(fn, candidates, retrieve, coins, torch.zeros(1), target_probs, 4, **kw)
        assert accept_index[0, 1] == 1
        _, accept_index, _, _ = sample(fn, candidates, retrieve, coins, torch.zeros(1), target_probs, 4)
        assert accept_index[0, 1] == -1


def chi_square_pvalue(counts, probs, min_expected=5.0):
    """Pearson chi-square goodness of fit; bins with small expectation pooled."""
    expected = probs * counts.sum()
    small = expected < min_expected
    obs = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = torch.tensor(float(len(obs) - 1))
    return float(torch.special.gammaincc(dof / 2, stat / 2))


def test_sampling_matches_target_distribution():
    """Emitted token sequences must follow the target's q exactly (thresholds 1):
    P(t1, t2, ...) = q_root(t1) * q_node(t1)(t2) * ... along the accepted path."""
    # full binary tree: root -> nodes 1, 2; 1 -> 3, 4; 2 -> 5, 6 (one request, tiled)
    n, vocab, draws = 7, 4, 800
    _, _, one = build(ref.build_tree_kernel_efficient, torch.tensor([[-1, 0, 1]]),
                      torch.tensor([[0, 1, 2, 3, 4, 5]]), torch.tensor([1]), 2, 2, n, QLEN_ONLY)
    retrieve = one.repeat(1, draws, 1)
    retrieve[0] = torch.arange(draws * n).view(draws, n)  # global ids
    tokens = torch.tensor([0, 1, 2, 3, 0, 1, 3])
    gen = torch.Generator().manual_seed(1234)
    q = torch.softmax(0.7 * torch.randn(n, vocab, generator=gen), dim=-1)
    predicts, accept_index, accept_num, _ = sample(
        tree_speculative_sampling_target_only, tokens.repeat(draws, 1), retrieve,
        torch.rand(draws, n, generator=gen), torch.rand(draws, generator=gen), q.repeat(draws, 1, 1), 3)

    children = tree_children(one[1, 0].tolist(), one[2, 0].tolist())

    def exact_distribution(q):
        """P(emitted sequence), walking the tree: a child's token continues the walk."""
        out = {}

        def walk(node, prefix, p):
            for t in range(vocab):
                child = next((c for c in children[node] if tokens[c] == t), None)
                if child is not None:
                    walk(child, prefix + (t,), p * float(q[node, t]))
                else:
                    out[prefix + (t,)] = p * float(q[node, t])

        walk(0, (), 1.0)
        return out

    exact = exact_distribution(q)
    assert len(exact) == 22 and abs(sum(exact.values()) - 1) < 1e-6
    keys = sorted(exact)
    counts = torch.zeros(len(keys), dtype=torch.float64)
    for b in range(draws):
        k = int(accept_num[b])
        seq = tuple(predicts[accept_index[b, : k + 1].long()].tolist())
        assert seq in exact, f"impossible sequence {seq}"
        counts[keys.index(seq)] += 1
    probs = torch.tensor([exact[k] for k in keys], dtype=torch.float64)
    assert chi_square_pvalue(counts, probs) > 1e-3
    # the check has power: the same draws are far off a moderately different q
    wrong = exact_distribution(0.6 * q + 0.4 / vocab)
    assert chi_square_pvalue(counts, torch.tensor([wrong[k] for k in keys], dtype=torch.float64)) < 1e-6
