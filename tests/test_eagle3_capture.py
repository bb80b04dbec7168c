"""The aux-layer-id rule, checked against transformers' hidden states through real SGLang (the
rule on its own: test_aux_layers.py)."""

import glob
import json

import pytest

from isolated import run_engines
from sglang_eagle3_ext.patches.eagle3_capture import DUMP_ENV
from sglang_eagle3_ext.tiny_models import build_eagle3_draft

PROMPT = "The capital of France is"
NEW_TOKENS = 8
# Aux layer ids per target (4 layers): 3 is the final layer's output, read at the final norm. One
# target reads the final layer only where it is asked for: no hook on the norm then.
IDS = {"llama": [0, 1, 2]}
FINAL = [0, 1, 3]


def hf_states(target, input_ids):
    """transformers' residual stream leaving each layer (pre-norm for the last one)."""
    import torch
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(target, torch_dtype=torch.float32).eval()
    pre_norm = {}
    hf.model.norm.register_forward_pre_hook(lambda m, a: pre_norm.setdefault("x", a[0]))
    with torch.no_grad():
        out = hf(torch.tensor([input_ids]), output_hidden_states=True)
    n = hf.config.num_hidden_layers
    # hidden_states[i + 1] leaves layer i; HF's last entry is after the final norm, so use the hook
    return [out.hidden_states[i + 1][0] for i in range(n - 1)] + [pre_norm["x"][0]]


# granite: a Llama-style class SGLang has no EAGLE-3 adapter for, so the plugin's own (forward
# hooks, patches/eagle3_hooks.py) captures: the path our five take on an SGLang that lacks theirs.
ARCHS = ["qwen2", "llama", "glm4_moe", "glm4_moe_lite", "deepseek_v3", "granite"]


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """One EAGLE-3 run per target architecture, each dumping what the target captured; the engines
    run one after the other in one child process (tests/isolated.py)."""
    from sglang_eagle3_ext.patches.eagle3_capture import EXTRA_TARGETS_ENV
    from sglang_eagle3_ext.tiny_archs import build_target

    calls, out = {}, {}
    for arch in ARCHS:
        root = tmp_path_factory.mktemp(f"capture-{arch}")
        target = models["target"] if arch == "qwen2" else str(root / "target")
        if arch != "qwen2":
            build_target(arch, target)
        draft = str(root / "draft")
        build_eagle3_draft(draft, target, kind="random", aux_layer_ids=IDS.get(arch, FINAL))
        env = {DUMP_ENV: str(root / "dump")}  # inherited by SGLang's scheduler process
        if arch == "granite":
            env[EXTRA_TARGETS_ENV] = "sglang.srt.models.granite:GraniteForCausalLM"
        calls[arch] = ((target, draft), dict(prompts=[PROMPT], max_new_tokens=NEW_TOKENS), env)
        out[arch] = (target, root / "dump")
    done = run_engines(calls)
    return {arch: (target, done[arch], dump) for arch, (target, dump) in out.items()}


@pytest.fixture(params=ARCHS)
def captured(request, runs):
    """(target, its EAGLE-3 run, the captured dumps, its aux layer ids) of one architecture."""
    import torch

    target, run, dump = runs[request.param]
    dumps = [torch.load(f) for f in sorted(glob.glob(str(dump / "*.pt")))]
    return target, run, dumps, IDS.get(request.param, FINAL)


def test_captured_states_equal_transformers_at_the_documented_layers(captured):
    import torch
    from transformers import AutoTokenizer

    target, run, dumps, aux_ids = captured
    prefill = next(d for d in dumps if d["mode"] == "EXTEND")
    ids = AutoTokenizer.from_pretrained(target)(PROMPT)["input_ids"]
    assert prefill["input_ids"].tolist() == ids
    expected = hf_states(target, ids)
    assert len(prefill["aux"]) == 3
    for got, layer in zip(prefill["aux"], aux_ids):
        torch.testing.assert_close(got, expected[layer], rtol=1e-4, atol=1e-4)


def test_same_layers_in_every_forward_mode(captured):
    target, run, dumps, aux_ids = captured
    log = run["server_info"]["internal_states"][0]["eagle3_ext"]["aux_capture"]
    assert {"EXTEND", "TARGET_VERIFY"} <= set(log), log
    assert {tuple(v["layers_entering"]) for v in log.values()} == {tuple(i + 1 for i in aux_ids)}
    assert {v["num_states"] for v in log.values()} == {3}
    assert {v["final_norm_hooked"] for v in log.values()} == {aux_ids[-1] == 3}  # no hook, no copy
    assert {d["mode"] for d in dumps} >= {"EXTEND", "TARGET_VERIFY"}
    state = run["server_info"]["internal_states"][0]["eagle3_ext"]
    arch = json.load(open(f"{target}/config.json"))["architectures"][0]
    patched_as = {"DeepseekV3ForCausalLM": "DeepseekV2ForCausalLM"}.get(arch, arch)  # a subclass
    assert state["aux_targets"][patched_as] == ("hooks (no upstream adapter)"
                                                if arch == "GraniteForCausalLM" else "patched")


def test_one_warning_where_upstream_would_read_other_states(captured):
    """SGLang 0.5.23's own adapters: Llama / Qwen2 / Glm4Moe read entering i + 1 for id i (so the
    same layers, but never the final one); DeepSeek-style ones (Glm4MoeLite, DeepseekV2 and its
    subclasses) add 1 only when the first id is 1, so [0, 1, 3] would read entering [0, 1, 3]."""
    target, run, dumps, aux_ids = captured
    arch = json.load(open(f"{target}/config.json"))["architectures"][0]
    differs = run["server_info"]["internal_states"][0]["eagle3_ext"]["aux_upstream_differs"]
    if arch == "GraniteForCausalLM" or aux_ids[-1] != 3:
        assert arch not in differs, differs  # no upstream adapter / the same states
    elif arch in ("Glm4MoeLiteForCausalLM", "DeepseekV3ForCausalLM"):
        assert "would read the states entering [0, 1, 3]:" in differs[arch], differs
    else:
        assert "would read the states entering [1, 2] and not the final layer's output" in differs[arch]


def test_verify_states_equal_transformers(captured):
    """The first verify pass (prompt in the KV cache, a chain of draft tokens on top) captures what
    transformers computes for prompt + those tokens: the verify attention path (for MLA the
    absorbed kernel) gives the same states as the prefill one."""
    import torch
    from transformers import AutoTokenizer

    target, run, dumps, aux_ids = captured
    ids = AutoTokenizer.from_pretrained(target)(PROMPT)["input_ids"]
    verify = next(d for d in dumps if d["mode"] == "TARGET_VERIFY")
    chain = verify["input_ids"].tolist()  # topk 1: a chain, so causal attention is the tree mask
    assert len(chain) == 4 and len(verify["aux"]) == 3  # speculative_num_draft_tokens, 3 aux ids
    expected = hf_states(target, ids + chain)
    for got, layer in zip(verify["aux"], aux_ids):
        torch.testing.assert_close(got, expected[layer][len(ids):], rtol=1e-4, atol=1e-4)


def test_eagle3_output_equals_transformers_greedy(captured):
    """Lossless: the EAGLE-3 run's tokens are transformers' greedy tokens for the same weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target, run, dumps, aux_ids = captured
    ids = AutoTokenizer.from_pretrained(target)(PROMPT)["input_ids"]
    hf = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    expected, got = out[0, len(ids):].tolist(), run["output_ids"][0]
    assert got and got == expected[:len(got)]
    # both stop at EOS; otherwise the lengths agree
    assert len(got) == len(expected) or expected[len(got) - 1] == hf.config.eos_token_id
    assert run["verify_steps"] > 0  # speculation really ran
