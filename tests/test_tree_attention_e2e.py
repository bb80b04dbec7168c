"""EAGLE-3 with target-verify attention on our tree kernel (SGLANG_EAGLE3_EXT_TREE_ATTENTION=on):
output equals the non-speculative output, and the kernel really served the verify passes."""

import pytest

from isolated import run_engine
from test_e2e_engine import NEW_TOKENS, PROMPTS


@pytest.fixture(scope="module")
def runs(models):
    run = dict(prompts=PROMPTS, max_new_tokens=NEW_TOKENS, speculative_eagle_topk=4,
               speculative_num_draft_tokens=8)
    base = run_engine(models["bigram_target"], None, prompts=PROMPTS, max_new_tokens=NEW_TOKENS)
    mp = pytest.MonkeyPatch()
    mp.setenv("SGLANG_EAGLE3_EXT_TREE_ATTENTION", "on")  # inherited by the scheduler process
    try:
        agreeing = run_engine(models["bigram_target"], models["agreeing_draft"], **run)
        random = run_engine(models["bigram_target"], models["random_draft"], **run)
    finally:
        mp.undo()
    return base, agreeing, random


def calls(run):
    return run["server_info"]["internal_states"][0]["eagle3_ext"]["tree_attention_calls"]


def test_tree_attention_is_lossless(runs):
    base, agreeing, random = runs
    assert agreeing["output_ids"] == base["output_ids"]
    assert random["output_ids"] == base["output_ids"]  # rejections across sibling branches
    assert agreeing["accept_length"] >= 1.8, agreeing["accept_length"]


def test_our_kernel_served_every_verify_pass(runs):
    _, agreeing, random = runs
    for run in (agreeing, random):
        state = run["server_info"]["internal_states"][0]["eagle3_ext"]
        assert state["patches"]["tree_attention"] == "applied"
        # one call per layer per verify pass (4 layers), none handed back to SGLang's kernel
        assert calls(run)["ran"] > 0 and calls(run)["fell_back"] == 0, calls(run)
