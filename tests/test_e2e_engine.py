"""Real SGLang on CPU through `sgl.LLM`: exact vs transformers, EAGLE-3 lossless, acceptance as built."""

import pytest

from isolated import run_engine

PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NEW_TOKENS = 16
TREES = [(2, 6), (4, 8), (8, 16)]  # (topk, draft tokens) with 3 draft steps
GREEDY_NO_EOS = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "ignore_eos": True}


def prompt_ids(target):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    return [tok(p)["input_ids"] for p in PROMPTS]


def sglang_ids(target, draft=None, **extra):
    return run_engine(target, draft, prompts=PROMPTS, max_new_tokens=NEW_TOKENS, **extra)


@pytest.fixture(scope="module")
def runs(models):
    """Every engine run the tests below compare, each started once."""
    return {
        "base": sglang_ids(models["target"]),
        "eagle3_random": sglang_ids(models["target"], models["random_draft"]),
        "bigram_base": sglang_ids(models["bigram_target"]),
        "bigram_agreeing": sglang_ids(models["bigram_target"], models["agreeing_draft"]),
        "bigram_random": sglang_ids(models["bigram_target"], models["random_draft"]),
        # Trees (topk > 1): random drafts make the verify walk reject across sibling branches.
        **{f"eagle3_random_topk{k}": sglang_ids(models["target"], models["random_draft"],
                                                 speculative_eagle_topk=k,
                                                 speculative_num_draft_tokens=n)
           for k, n in TREES},
        "bigram_agreeing_topk4": sglang_ids(models["bigram_target"], models["agreeing_draft"],
                                            speculative_eagle_topk=4,
                                            speculative_num_draft_tokens=8),
    }


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
    assert runs["eagle3_random"]["output_ids"] == runs["base"]["output_ids"]
    assert runs["eagle3_random"]["verify_steps"] > 0  # speculation really ran


def test_eagle3_is_lossless_with_the_agreeing_draft(runs):
    assert runs["bigram_agreeing"]["output_ids"] == runs["bigram_base"]["output_ids"]
    assert runs["bigram_random"]["output_ids"] == runs["bigram_base"]["output_ids"]


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


@pytest.mark.parametrize("topk,draft_tokens", [(1, 4), (4, 8)])
def test_eagle3_sampling_runs_and_respects_lengths(models, topk, draft_tokens):
    """temperature > 0 goes through tree sampling (ours on CPU); the agreeing draft's first token
    is the target's argmax, so at a low temperature it is still mostly accepted."""
    r = run_engine(models["bigram_target"], models["agreeing_draft"], prompts=PROMPTS,
                   max_new_tokens=NEW_TOKENS, sampling={"temperature": 0.05, "ignore_eos": True},
                   random_seed=1, speculative_eagle_topk=topk,
                   speculative_num_draft_tokens=draft_tokens)
    assert [len(ids) for ids in r["output_ids"]] == [NEW_TOKENS] * len(PROMPTS)
    assert r["verify_steps"] > 0 and r["accept_length"] >= 1.5
