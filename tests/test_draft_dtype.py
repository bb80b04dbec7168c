"""Target and draft in different dtypes (`--dtype auto` takes each from its config.json).

An fp16 target with a bf16 draft: without the draft_dtype patch the first draft-extend fails in
the draft's `fc` ("expected m1 and m2 to have the same dtype"); with it, output equals the fp16
baseline and the agreeing draft is still accepted.
"""

import json
import os
import shutil

import pytest

from isolated import run_engine
from test_e2e_engine import NEW_TOKENS, PROMPTS


def with_dtype(src, dst, dtype):
    shutil.copytree(src, dst)
    path = os.path.join(dst, "config.json")
    config = json.load(open(path))
    config.pop("dtype", None)
    config["torch_dtype"] = dtype
    json.dump(config, open(path, "w"))
    return dst


@pytest.fixture(scope="module")
def mixed(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("dtypes")
    target = with_dtype(models["bigram_target"], str(root / "target-fp16"), "float16")
    draft = with_dtype(models["agreeing_draft"], str(root / "draft-bf16"), "bfloat16")
    run = dict(prompts=PROMPTS, max_new_tokens=NEW_TOKENS, dtype="auto")
    return run_engine(target, None, **run), run_engine(target, draft, **run)


def test_fp16_target_with_bf16_draft_is_lossless(mixed):
    base, eagle3 = mixed
    assert eagle3["output_ids"] == base["output_ids"]
    assert eagle3["verify_steps"] > 0
    assert eagle3["accept_length"] >= 1.8, eagle3["accept_length"]  # the states reach the draft intact
    assert eagle3["server_info"]["internal_states"][0]["eagle3_ext"]["patches"]["draft_dtype"] == "applied"
