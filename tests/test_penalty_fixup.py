"""Exact penalties per draft-tree node: the Triton kernel vs its plain-torch reference, the reference
vs SGLang's own penalizers applied one token at a time, the state advance vs SGLang's cumulate, and
tree sampling through the patched `eagle_sample` against the exactly penalized distribution.

CPU by default (TRITON_INTERPRET=1, set before Triton is imported).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import dataclasses  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from sglang_eagle3_ext import penalty_harness as h  # noqa: E402
from sglang_eagle3_ext.kernels import penalty_fixup_reference as ref  # noqa: E402
from sglang_eagle3_ext.kernels import tree_reference as tref  # noqa: E402
from sglang_eagle3_ext.kernels.penalty_fixup import penalty_advance, penalty_fixup  # noqa: E402
from sglang_eagle3_ext.kernels.tree_inputs import draft_steps, draft_tree  # noqa: E402

DEVICE = "cpu" if os.environ["TRITON_INTERPRET"] == "1" else "cuda"
VOCAB = 40
EOS, STOP = h.EOS, 5  # the stand-in tokenizer's EOS; a request's stop_token_ids

# (topk, steps, draft tokens): chain and trees, topk 2..8
TREES = [(1, 3, 4), (1, 6, 7), (2, 3, 8), (4, 4, 16), (8, 3, 24), (8, 8, 64)]
KINDS = {
    "repetition": dict(repetition_penalty=1.3),
    "repetition_below_1": dict(repetition_penalty=0.8),
    "frequency": dict(frequency_penalty=0.5),
    "frequency_negative": dict(frequency_penalty=-0.4),
    "presence": dict(presence_penalty=1.0),
    "min_tokens": dict(min_new_tokens=6, stop_token_ids={STOP}),
    "logit_bias": dict(logit_bias={"3": 2.5, "7": -100.0}, repetition_penalty=1.05),
    "all": dict(repetition_penalty=1.3, frequency_penalty=0.5, presence_penalty=1.0, min_new_tokens=5,
                stop_token_ids={STOP}, logit_bias={"2": 1.5}),
}
MIXED = [KINDS["all"], {}, KINDS["min_tokens"], dict(frequency_penalty=0.25, repetition_penalty=1.1)]


# ---------------------------------------------------------------- SGLang's penalizers on a tiny batch


def orchestrator(params, history):
    return h.orchestrator(params, VOCAB, history)


def state_of(orch, params):
    from sglang_eagle3_ext.patches.eagle_sample import penalty_state

    return penalty_state(orch, h.logit_bias(params, VOCAB), h.penalizer_classes())


def sglang_one_by_one(raw_row, params, history, path_tokens):
    """The logits SGLang's non-speculative sampler would use after generating history + path_tokens."""
    return h.one_by_one(raw_row, params, VOCAB, list(history) + list(path_tokens))


# ---------------------------------------------------------------- inputs


def random_tree(topk, steps, n, bs, seed):
    """candidates [bs, n] (root first) and the retrieval links of EAGLE-built draft trees."""
    gen = torch.Generator().manual_seed(seed)
    parent_list, sel, tokens = draft_tree(draft_steps(bs, topk, steps, VOCAB, gen), topk, n)
    # few distinct tokens: paths repeat tokens, so counts and "seen" matter
    tokens = tokens % 9
    candidates = torch.cat([torch.randint(0, 9, (bs, 1), generator=gen), tokens], dim=1)
    seq_lens = torch.randint(1, 30, (bs,), generator=gen)
    mask = torch.ones(n * n * bs, dtype=torch.bool)
    positions = torch.zeros(bs * n, dtype=torch.long)
    retrieve = torch.full((3, bs, n), -1, dtype=torch.long)
    tref.build_tree_kernel_efficient(parent_list, sel, seq_lens, mask, positions, retrieve[0], retrieve[1],
                                     retrieve[2], topk, steps, n, 1)
    return candidates, retrieve, gen


def history_rounds(bs, length, gen):
    """Output tokens before this step, one round per token (EOS, STOP and repeats included)."""
    return torch.randint(0, 9, (length, bs), generator=gen).tolist()


def to_device(state):
    return dataclasses.replace(state, **{f.name: getattr(state, f.name).to(DEVICE)
                                         for f in dataclasses.fields(state) if getattr(state, f.name) is not None})


# ---------------------------------------------------------------- kernel == reference


@pytest.mark.parametrize("kind", [*KINDS, "mixed"])
@pytest.mark.parametrize("topk,steps,n", TREES, ids=[f"topk{k}-steps{s}-n{n}" for k, s, n in TREES])
def test_kernel_equals_reference(topk, steps, n, kind):
    params = MIXED if kind == "mixed" else [KINDS[kind]] * 3
    bs = len(params)
    candidates, retrieve, gen = random_tree(topk, steps, n, bs, seed=7 * n + topk)
    state = state_of(orchestrator(params, history_rounds(bs, 3, gen)), params)
    logits = 4 * torch.randn(bs * n, VOCAB, generator=gen)
    expected = logits.clone()
    ref.penalty_fixup(expected, candidates, retrieve[1], retrieve[2], state)
    got = logits.clone().to(DEVICE)
    penalty_fixup(got, candidates.to(DEVICE), retrieve[1].to(DEVICE), retrieve[2].to(DEVICE),
                  to_device(state), max_path=steps + 1)
    assert torch.equal(got.cpu(), expected)  # bit-exact, -inf included
    assert not torch.equal(expected, logits)


def test_kernel_equals_reference_bf16_logits():
    params = MIXED
    candidates, retrieve, gen = random_tree(4, 4, 16, len(params), seed=3)
    state = state_of(orchestrator(params, history_rounds(len(params), 4, gen)), params)
    logits = (4 * torch.randn(len(params) * 16, VOCAB, generator=gen)).bfloat16()
    expected = logits.clone()
    ref.penalty_fixup(expected, candidates, retrieve[1], retrieve[2], state)
    got = logits.clone().to(DEVICE)
    penalty_fixup(got, candidates.to(DEVICE), retrieve[1].to(DEVICE), retrieve[2].to(DEVICE), to_device(state))
    assert torch.equal(got.cpu(), expected)


# ---------------------------------------------------------------- reference == SGLang one token at a time


@pytest.mark.parametrize("kind", [*KINDS, "mixed"])
@pytest.mark.parametrize("topk,steps,n", [(1, 5, 6), (4, 3, 10)], ids=["chain", "topk4"])
def test_reference_equals_sglang_generating_one_by_one(topk, steps, n, kind):
    """Each node's row = what SGLang's own sampler applies after the root path's tokens were generated.

    Under the plugin's accounting the state holds the output so far minus its last token (the
    tree's root), so the oracle generates `history` and then root + ancestors + the node."""
    params = MIXED if kind == "mixed" else [KINDS[kind]] * 2
    bs = len(params)
    candidates, retrieve, gen = random_tree(topk, steps, n, bs, seed=n + 11 * topk)
    history = history_rounds(bs, 2, gen)
    state = state_of(orchestrator(params, history), params)
    logits = 4 * torch.randn(bs * n, VOCAB, generator=gen)
    fixed = logits.clone()
    ref.penalty_fixup(fixed, candidates, retrieve[1], retrieve[2], state)
    for b in range(bs):
        paths = ref.tree_paths(retrieve[1, b].tolist(), retrieve[2, b].tolist())
        for j in range(n):
            path_tokens = [int(candidates[b, i]) for i in paths[j]]
            expected = sglang_one_by_one(logits[b * n + j], params[b], [h[b] for h in history], path_tokens)
            assert torch.equal(fixed[b * n + j], expected), (kind, b, j, path_tokens)


def test_siblings_are_not_ancestors():
    # root(9) -> node 1 (3) -> node 3 (4); root -> node 2 (4): node 2's row must not see token 3
    candidates = torch.tensor([[9, 3, 4, 4]])
    next_token, next_sibling = torch.tensor([[1, 3, -1, -1]]), torch.tensor([[-1, 2, -1, -1]])
    params = [dict(presence_penalty=1.0)]
    state = state_of(orchestrator(params, []), params)
    logits = torch.zeros(4, VOCAB)
    penalty_fixup(logits, candidates, next_token, next_sibling, state)
    penalized = {j: set(torch.nonzero(logits[j] != 0).view(-1).tolist()) for j in range(4)}
    assert penalized == {0: {9}, 1: {9, 3}, 2: {9, 4}, 3: {9, 3, 4}}


def test_min_tokens_mask_lifts_at_the_right_depth():
    """min_tokens = 5 with 2 tokens counted: the root and node 1 see 3 and 4 generated tokens (EOS and
    stop ids masked), node 2 (depth 2) sees 5 (unmasked)."""
    params = [dict(min_new_tokens=5, stop_token_ids={STOP})]
    state = state_of(orchestrator(params, [[7], [8]]), params)
    chain = torch.tensor([[9, 3, 4]]), torch.tensor([[1, 2, -1]]), torch.full((1, 3), -1)
    logits = torch.zeros(3, VOCAB)
    penalty_fixup(logits, *chain, state)
    masked = [set(torch.nonzero(torch.isinf(logits[j])).view(-1).tolist()) for j in range(3)]
    assert masked == [{EOS, STOP}, {EOS, STOP}, set()]


# ---------------------------------------------------------------- the state advance == SGLang's cumulate


@pytest.mark.parametrize("fn", [penalty_advance, ref.penalty_advance], ids=["triton", "reference"])
def test_advance_counts_exactly_the_accepted_tokens(fn):
    params = MIXED
    bs, n, steps = len(params), 10, 3
    candidates, retrieve, gen = random_tree(4, steps, n, bs, seed=5)
    history = history_rounds(bs, 3, gen)
    orch = orchestrator(params, history)
    # a verify step: accept a random root path per request (length 1..steps+1 nodes); predict holds
    # what the target committed after each accepted node (the next node's token, then a bonus)
    accept_index = torch.full((bs, steps + 1), -1, dtype=torch.int32)
    accept_lens = torch.zeros(bs, dtype=torch.int32)
    predict = torch.zeros(bs * n, dtype=torch.int32)
    accepted_tokens = []
    for b in range(bs):
        paths = ref.tree_paths(retrieve[1, b].tolist(), retrieve[2, b].tolist())
        path = max(paths, key=len)[: 1 + b % (steps + 1)]
        accept_index[b, : len(path)] = torch.tensor([b * n + i for i in path], dtype=torch.int32)
        accept_lens[b] = len(path)
        for here, after in zip(path, path[1:] + [None]):
            predict[b * n + here] = candidates[b, after] if after is not None else 30 + b
        accepted_tokens.append([int(candidates[b, i]) for i in path])  # root + accepted drafts
    state = to_device(state_of(orch, params))
    fn(state, candidates.reshape(-1).to(DEVICE), predict.to(DEVICE), accept_index.to(DEVICE), accept_lens.to(DEVICE))
    for b in range(bs):
        theirs = orchestrator([params[b]], [[h[b]] for h in history] + [[t] for t in accepted_tokens[b]])
        mine, other = state_of(orch, params), state_of(theirs, [params[b]])
        for f in dataclasses.fields(mine):
            a, o = getattr(mine, f.name), getattr(other, f.name)
            if f.name == "logit_bias" or o is None:
                continue
            assert torch.equal(a[b].cpu(), o[0]), (b, f.name)


# ---------------------------------------------------------------- through the patched eagle_sample


@pytest.fixture(scope="module")
def sglang_verify():
    """SGLang's eagle_utils with the plugin's tree ops and this patch applied, in this process."""
    from sglang_eagle3_ext.patches import eagle_sample, tree_ops

    with h.verify_context():
        applied = [p for p in (tree_ops.PATCH, eagle_sample.PATCH) if p.status is None]
        for p in applied:
            assert p.run() == "applied", p.detail
        yield eagle_sample.PATCH
        for p in reversed(applied):
            p.revert()


def run_eagle_sample(params, history, candidates, retrieve, steps, logits, temperature):
    """One verify through SGLang's eagle_sample; returns its outputs and the (advanced) orchestrator."""
    orch = orchestrator(params, history)
    batch = h.verify_batch(orch, params, VOCAB, temperature)
    return h.run_eagle_sample(h.verify_input(candidates, retrieve, steps, topk=2), batch, logits), orch


def binary_tree(tokens, draws):
    """Full binary tree of depth 2 (root -> 1, 2; 1 -> 3, 4; 2 -> 5, 6), one request tiled `draws` times."""
    n = 7
    one = torch.full((3, 1, n), -1, dtype=torch.long)
    tref.build_tree_kernel_efficient(torch.tensor([[-1, 0, 1]]), torch.tensor([[0, 1, 2, 3, 4, 5]]),
                                     torch.tensor([1]), torch.ones(n * n, dtype=torch.bool),
                                     torch.zeros(n, dtype=torch.long), one[0], one[1], one[2], 2, 2, n, 1)
    retrieve = one.repeat(1, draws, 1)
    retrieve[0] = torch.arange(draws * n).view(draws, n)
    return torch.tensor(tokens).repeat(draws, 1), retrieve, one


def test_tree_sampling_draws_from_the_exactly_penalized_distribution(sglang_verify):
    """Temperature 1: emitted sequences follow q_node = softmax(penalties(prefix + root path)) along the
    tree (what sampling one token at a time would give); upstream's relaxed penalties do not."""
    from sglang_eagle3_ext.kernels.tree_inputs import tree_children
    from test_tree_kernels import chi_square_pvalue

    vocab, draws = 4, 300  # the relaxed distribution is ~4.4 chi-square units per draw away
    params = dict(presence_penalty=1.2, frequency_penalty=0.4, repetition_penalty=1.6)
    history = [3]
    tokens = [2, 0, 1, 0, 1, 1, 0]  # root 2; children 0, 1; grandchildren repeat them
    candidates, retrieve, one = binary_tree(tokens, draws)
    gen = torch.Generator().manual_seed(4321)
    raw = torch.randn(7, VOCAB, generator=gen)
    raw[:, vocab:] = -1e4  # four tokens carry the mass
    children = tree_children(one[1, 0].tolist(), one[2, 0].tolist())
    paths = ref.tree_paths(one[1, 0].tolist(), one[2, 0].tolist())

    def exact_distribution(node_probs):
        out = {}

        def walk(node, prefix, p):
            for t in range(vocab):
                child = next((c for c in children[node] if tokens[c] == t), None)
                if child is not None:
                    walk(child, prefix + (t,), p * node_probs[node][t])
                else:
                    out[prefix + (t,)] = p * node_probs[node][t]

        walk(0, (), 1.0)
        return out

    def probs(rows):
        return [torch.softmax(r.double(), -1)[:vocab].tolist() for r in rows]

    exact = exact_distribution(probs([sglang_one_by_one(raw[j], params, history, [tokens[i] for i in paths[j]])
                                      for j in range(7)]))
    torch.manual_seed(99)  # eagle_sample's coins come from torch.rand
    (predict, accept_lens, accept_index), orch = run_eagle_sample(
        [params] * draws, [[t] * draws for t in history], candidates, retrieve, 2, raw.repeat(draws, 1), 1.0)
    keys = sorted(exact)
    counts = torch.zeros(len(keys), dtype=torch.float64)
    for b in range(draws):
        seq = tuple(predict[accept_index[b, : int(accept_lens[b])].long()].tolist())
        counts[keys.index(seq)] += 1
    assert chi_square_pvalue(counts, torch.tensor([exact[k] for k in keys], dtype=torch.float64)) > 1e-3
    # the check has power: upstream's relaxed penalties (history + root on every node) are far off
    relaxed = exact_distribution(probs([sglang_one_by_one(raw[j], params, history, [tokens[0]]) for j in range(7)]))
    assert chi_square_pvalue(counts, torch.tensor([relaxed[k] for k in keys], dtype=torch.float64)) < 1e-6
    # and the state moved by exactly each draw's accepted tokens (root + accepted drafts)
    for b in range(0, draws, 50):
        accepted = [tokens[int(i) % 7] for i in accept_index[b, : int(accept_lens[b])]]
        theirs = state_of(orchestrator([params], [[t] for t in history + accepted]), [params])
        mine = state_of(orch, [params] * draws)
        assert torch.equal(mine.cum_frequency[b], theirs.cum_frequency[0])
        assert torch.equal(mine.cum_repetition[b], theirs.cum_repetition[0])


def test_greedy_verify_takes_the_exactly_penalized_argmax(sglang_verify):
    """Temperature 0 through eagle_sample: the accepted run equals greedy decoding one token at a time."""
    params = dict(presence_penalty=3.0, repetition_penalty=2.0, min_new_tokens=3, stop_token_ids={STOP})
    history = [4]
    # a chain whose drafts are what one-by-one greedy decoding picks, found by running the oracle
    gen = torch.Generator().manual_seed(11)
    raw = torch.randn(5, VOCAB, generator=gen)
    raw[:, EOS] += 3.0  # EOS would win where min_tokens does not mask it
    tokens = [6]
    for j in range(4):
        tokens.append(int(sglang_one_by_one(raw[j], params, history, tokens).argmax()))
    candidates = torch.tensor([tokens])
    chain = torch.tensor([[1, 2, 3, 4, -1]]), torch.full((1, 5), -1)
    retrieve = torch.stack([torch.arange(5).view(1, 5), *chain])
    (predict, accept_lens, accept_index), _ = run_eagle_sample([params], [history], candidates, retrieve, 4, raw, 0.0)
    assert int(accept_lens[0]) == 5  # every draft accepted
    bonus = int(sglang_one_by_one(raw[4], params, history, tokens).argmax())
    assert predict[accept_index[0].long()].tolist() == tokens[1:] + [bonus]


def test_requests_without_penalties_pay_nothing(sglang_verify, monkeypatch):
    """No penalties in the batch: no stashed orchestrator, no launch, upstream's answer. With them:
    one fix-up launch and one state-advance launch per verify."""
    from sglang.srt.speculative import eagle_utils

    from sglang_eagle3_ext.kernels import penalty_fixup as pf
    from sglang_eagle3_ext.patches.eagle_sample import STASH

    launches = []
    for name in ("_penalty_fixup_kernel", "_penalty_advance_kernel"):
        kernel = getattr(pf, name)

        class Counting:  # kernel[grid](...) as Triton's, counted
            def __getitem__(self, grid, kernel=kernel, name=name):
                launches.append(name)
                return kernel[grid]

        monkeypatch.setattr(pf, name, Counting())
    candidates, retrieve, gen = random_tree(4, 3, 10, 2, seed=8)
    logits = 4 * torch.randn(20, VOCAB, generator=gen)
    vi = h.verify_input(candidates, retrieve, 3, topk=4)
    plain = [{}, {}]
    batch = h.verify_batch(orchestrator(plain, [[3, 4]]), plain, VOCAB)
    assert not hasattr(batch.sampling_info, STASH)
    got = h.run_eagle_sample(vi, batch, logits)
    upstream = eagle_utils.eagle_sample.__wrapped__(vi, batch, SimpleNamespace(next_token_logits=logits.clone()))
    assert launches == [] and all(torch.equal(a, b) for a, b in zip(got, upstream))
    params = [dict(presence_penalty=1.0), {}]
    h.run_eagle_sample(vi, h.verify_batch(orchestrator(params, [[3, 4]]), params, VOCAB), logits)
    assert launches == ["_penalty_fixup_kernel", "_penalty_advance_kernel"]


# ---------------------------------------------------------------- the probe refuses what it cannot honour


def test_patch_refuses_a_penalizer_it_does_not_know(monkeypatch):
    from sglang.srt.sampling.penaltylib.orchestrator import _BatchedPenalizer

    from sglang_eagle3_ext.patches.base import NotApplicable, Plan
    from sglang_eagle3_ext.patches.eagle_sample import PATCH

    class BatchedTemperatureDriftPenalizer(_BatchedPenalizer):  # a new kind SGLang might add
        pass

    with pytest.raises(NotApplicable, match="BatchedTemperatureDriftPenalizer"):
        PATCH.plan(Plan(PATCH))
    del BatchedTemperatureDriftPenalizer
    import gc

    gc.collect()


def test_patch_refuses_penalizer_math_it_does_not_mirror(monkeypatch):
    from sglang.srt.sampling import penaltylib

    from sglang_eagle3_ext.patches.base import NotApplicable, Plan
    from sglang_eagle3_ext.patches.eagle_sample import PATCH

    def twice(self, output_ids):  # an SGLang that counted each token twice
        for _ in range(2):
            self.cumulated_frequency_penalties.scatter_add_(1, output_ids.unsqueeze(1), self.frequency_penalties)

    monkeypatch.setattr(penaltylib.BatchedFrequencyPenalizer, "_cumulate_output_tokens", twice)
    with pytest.raises(NotApplicable, match="does not advance"):
        PATCH.plan(Plan(PATCH))
