"""Real SGLang on CPU through `sgl.LLM`: exact vs transformers, EAGLE-3 lossless (chains, trees, our
tree attention), acceptance as built, engine after engine in one process."""

import pytest

from isolated import run_engines

PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NEW_TOKENS = 16
# (topk, draft tokens) with 3 draft steps; topk 4 runs with the agreeing draft below, and in
# test_releases / test_penalties_e2e. Random drafts make the verify walk reject across siblings.
TREES = [(8, 16)]
SAMPLED = [(4, 8)]  # chains sample too, but a tree exercises the sibling walk
GREEDY_NO_EOS = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "ignore_eos": True}


def prompt_ids(target):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    return [tok(p)["input_ids"] for p in PROMPTS]


def call(target, draft=None, env=None, **extra):
    # metrics on in every engine: a process making engine after engine must not trip over its
    # own Prometheus collectors (test_engines_with_metrics_share_one_process)
    return (target, draft), dict(prompts=PROMPTS, max_new_tokens=NEW_TOKENS, enable_metrics=True, **extra), env or {}


TREE_ATTENTION = {"SGLANG_EAGLE3_EXT_TREE_ATTENTION": "on"}  # target-verify attention on our kernel


@pytest.fixture(scope="module")
def runs(models):
    """Every engine run the tests below compare, each started once, one after the other in one
    child process (as a user's script making several engines would)."""
    return run_engines({
        "base": call(models["target"]),
        "bigram_base": call(models["bigram_target"]),
        "bigram_agreeing": call(models["bigram_target"], models["agreeing_draft"]),
        "bigram_random": call(models["bigram_target"], models["random_draft"]),
        # Trees (topk > 1): random drafts make the verify walk reject across sibling branches.
        **{f"eagle3_random_topk{k}": call(models["target"], models["random_draft"],
                                          speculative_eagle_topk=k, speculative_num_draft_tokens=n)
           for k, n in TREES},
        "bigram_agreeing_topk4": call(models["bigram_target"], models["agreeing_draft"],
                                      speculative_eagle_topk=4, speculative_num_draft_tokens=8),
        **{f"tree_attention_{d}": call(models["bigram_target"], models[f"{d}_draft"], env=TREE_ATTENTION,
                                       speculative_eagle_topk=4, speculative_num_draft_tokens=8)
           for d in ("agreeing", "random")},
        # temperature > 0 goes through tree sampling (ours on CPU)
        **{f"sampled_topk{k}": call(models["bigram_target"], models["agreeing_draft"],
                                    sampling={"temperature": 0.05, "ignore_eos": True}, random_seed=1,
                                    speculative_eagle_topk=k, speculative_num_draft_tokens=n)
           for k, n in SAMPLED},
    })


def test_engines_with_metrics_share_one_process(runs):
    """Each engine of `runs` started with metrics on in the same process, after the others shut down."""
    assert len({r["pid"] for r in runs.values()}) == 1 and len(runs) >= 2
    assert all(r["series"] for r in runs.values())  # SGLang's collectors live in this process


def test_sglang_greedy_equals_transformers(models, runs):
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(models["target"], torch_dtype=torch.float32).eval()
    for ids, got in zip(prompt_ids(models["target"]), runs["base"]["output_ids"]):
        with torch.no_grad():
            out = hf.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
        expected = out[0, len(ids):].tolist()
        assert got == expected[:len(got)] and len(got) >= min(len(expected), 1)
        # SGLang stops at EOS like HF does; the common prefix must be all of the shorter one
        assert len(got) == len(expected) or expected[len(got) - 1] == hf.config.eos_token_id


def test_eagle3_is_lossless_with_a_random_draft(runs):
    assert runs["bigram_random"]["output_ids"] == runs["bigram_base"]["output_ids"]
    assert runs["bigram_random"]["verify_steps"] > 0  # speculation really ran


def test_eagle3_is_lossless_with_the_agreeing_draft(runs):
    assert runs["bigram_agreeing"]["output_ids"] == runs["bigram_base"]["output_ids"]


def test_acceptance_reflects_the_draft(runs):
    # accept length from SGLang's own per-request counters (meta_info spec_verify_ct)
    agreeing = runs["bigram_agreeing"]["accept_length"]
    random = runs["bigram_random"]["accept_length"]
    # The agreeing draft's first proposal is always right (see tiny_models): ~2 tokens per step.
    assert agreeing >= 1.8, agreeing
    assert random < 1.5 and random < agreeing, (random, agreeing)


def test_plugin_ran_inside_the_scheduler(runs):
    import os

    state = runs["bigram_agreeing"]["server_info"]["internal_states"][0]["eagle3_ext"]
    assert state["pid"] != os.getpid()  # reported by the scheduler process itself
    assert all(state["patches"][p] == "applied" for p in ("tree_ops", "cpu_rotary", "cpu_cache_locs"))


@pytest.mark.parametrize("topk,draft_tokens", TREES)
def test_eagle3_tree_is_lossless(runs, topk, draft_tokens):
    got = runs[f"eagle3_random_topk{topk}"]
    assert got["output_ids"] == runs["base"]["output_ids"]
    assert got["verify_steps"] > 0


def test_eagle3_tree_accepts_the_agreeing_branch(runs):
    got = runs["bigram_agreeing_topk4"]
    assert got["output_ids"] == runs["bigram_base"]["output_ids"]
    # the right token is the draft's top-1 child of the root in every step
    assert got["accept_length"] >= 1.8, got["accept_length"]


@pytest.mark.parametrize("topk,draft_tokens", SAMPLED)
def test_eagle3_sampling_runs_and_respects_lengths(runs, topk, draft_tokens):
    """The agreeing draft's first token is the target's argmax, so at a low temperature it is
    still mostly accepted."""
    r = runs[f"sampled_topk{topk}"]
    assert [len(ids) for ids in r["output_ids"]] == [NEW_TOKENS] * len(PROMPTS)
    assert r["verify_steps"] > 0 and r["accept_length"] >= 1.5


# Target-verify attention on our tree kernel (SGLANG_EAGLE3_EXT_TREE_ATTENTION=on): output equals the
# non-speculative output, and the kernel really served the verify passes.

def test_tree_attention_is_lossless(runs):
    base, agreeing, random = runs["bigram_base"], runs["tree_attention_agreeing"], runs["tree_attention_random"]
    assert agreeing["output_ids"] == base["output_ids"]
    assert random["output_ids"] == base["output_ids"]  # rejections across sibling branches
    assert agreeing["accept_length"] >= 1.8, agreeing["accept_length"]


def test_our_tree_attention_kernel_served_every_verify_pass(runs):
    for name in ("tree_attention_agreeing", "tree_attention_random"):
        state = runs[name]["server_info"]["internal_states"][0]["eagle3_ext"]
        assert state["patches"]["tree_attention"] == "applied"
        # one call per layer per verify pass (4 layers), none handed back to SGLang's kernel
        calls = state["tree_attention_calls"]
        assert calls["ran"] > 0 and calls["fell_back"] == 0, calls


def test_tree_attention_stays_off_by_default(runs):
    state = runs["bigram_agreeing_topk4"]["server_info"]["internal_states"][0]["eagle3_ext"]
    assert state["patches"]["tree_attention"] == "skipped" and state["tree_attention_calls"]["ran"] == 0
