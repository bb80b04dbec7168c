"""A draft that does not fit its target is caught from its files, with the exact problem and fix.

Each test copies a good tiny draft, breaks exactly one thing and checks the whole error text.
Tiny pair: hidden 64, vocab 320, 4 target layers, draft aux ids [0, 1, 2] (fc input 192).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from sglang_eagle3_ext.errors import Eagle3ConfigError
from sglang_eagle3_ext.pairing_check import check_pair, validate_pair

FIX = "use an EAGLE-3 draft trained for this target"
IDS_KEY = "eagle_config.eagle_aux_hidden_state_layer_ids"
FIX_IDS = f"set {IDS_KEY} in the draft's config.json to the target layers it was trained on"
NAMES = ["hidden_size", "vocab", "d2t", "aux_layer_ids", "tokenizer"]


@pytest.fixture
def draft(models, tmp_path):
    """A writable copy of the random draft (fits models['target'])."""
    return str(shutil.copytree(models["random_draft"], tmp_path / "draft"))


def edit_config(folder, **changes):
    path = f"{folder}/config.json"
    cfg = json.load(open(path))
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    json.dump(cfg, open(path, "w"))


def edit_weights(folder, **changes):
    """Rewrite model.safetensors with tensors replaced (None drops one)."""
    from safetensors.torch import load_file, save_file

    w = load_file(f"{folder}/model.safetensors")
    for key, value in changes.items():
        if value is None:
            w.pop(key)
        else:
            w[key] = value
    save_file(w, f"{folder}/model.safetensors")


def error_of(models, draft):
    with pytest.raises(Eagle3ConfigError) as e:
        validate_pair(models["target"], draft)
    return str(e.value)


def reduced_vocab(draft, n=256):
    """Make the draft a valid reduced-vocabulary one: draft ids 0..n-1 -> target ids 0..n-1."""
    import torch
    from safetensors.torch import load_file

    edit_config(draft, draft_vocab_size=n)
    lm_head = load_file(f"{draft}/model.safetensors")["lm_head.weight"][:n].clone()
    edit_weights(draft, d2t=torch.zeros(n, dtype=torch.int64), **{"lm_head.weight": lm_head})


# ---------------------------------------------------------------- good pairs

@pytest.mark.parametrize("target,draft_key", [("target", "random_draft"),
                                              ("bigram_target", "agreeing_draft")])
def test_good_pairs_pass(models, target, draft_key):
    results = validate_pair(models[target], models[draft_key])
    assert [r.name for r in results] == NAMES
    assert [r.status for r in results] == ["ok", "ok", "ok", "ok", "skipped"]
    assert results[3].detail == (f"[0, 1, 2] from {IDS_KEY} (rule 'leaving'): the states entering "
                                 f"layers [1, 2, 3] of the 4-layer target, fc input 192")


def test_hub_ids_are_left_to_sglang(models):
    results = validate_pair("Qwen/Qwen2.5-7B-Instruct", models["random_draft"])
    assert [(r.status, r.detail) for r in results] == [
        ("skipped", "target 'Qwen/Qwen2.5-7B-Instruct' is not a local folder (hub id): "
                    "pairing left to SGLang")]


def test_missing_draft_folder(models):
    assert error_of(models, "/nonexistent/draft") == (
        "draft path '/nonexistent/draft' does not exist or is not a directory: "
        "pass the folder that holds the draft's config.json and weights")


# ---------------------------------------------------------------- 1. hidden size

def test_target_hidden_size_mismatch(models, draft):
    edit_config(draft, target_hidden_size=48)
    assert error_of(models, draft) == (
        "draft target_hidden_size 48 != target hidden_size 64 (the draft's fc reads the "
        f"target's hidden states): {FIX}")


def test_hidden_size_mismatch(models, draft):
    edit_config(draft, hidden_size=32)
    assert error_of(models, draft) == (
        "draft hidden_size 32 != target hidden_size 64 (the draft's fc reads the "
        f"target's hidden states): {FIX}")


# ---------------------------------------------------------------- 2. vocab

def test_vocab_size_mismatch(models, draft):
    edit_config(draft, vocab_size=321)
    assert error_of(models, draft) == (
        "draft vocab_size 321 != target vocab_size 320 (the draft shares the target's "
        f"embedding and token ids): {FIX}")


def test_draft_vocab_larger_than_target(models, draft):
    edit_config(draft, draft_vocab_size=400)
    assert error_of(models, draft) == (
        "draft draft_vocab_size 400 > target vocab_size 320 (a draft vocabulary is a subset of "
        f"the target's): {FIX}, or fix draft_vocab_size in the draft's config.json")


# ---------------------------------------------------------------- 3. d2t / t2d

def test_reduced_vocab_draft_passes(models, draft):
    reduced_vocab(draft)
    d2t = validate_pair(models["target"], draft)[2]
    assert (d2t.status, d2t.detail) == ("ok", "d2t and t2d fit draft_vocab_size 256, target vocab 320")


def test_missing_d2t_with_reduced_vocab(models, draft):
    reduced_vocab(draft)
    edit_weights(draft, d2t=None)
    assert error_of(models, draft) == (
        "draft has no d2t tensor but draft_vocab_size 256 < vocab_size 320, so draft ids cannot "
        "be mapped to target ids: use the draft's full checkpoint (it saves d2t next to the "
        "weights)")


def test_d2t_wrong_shape(models, draft):
    edit_config(draft, draft_vocab_size=256)  # d2t still has 320 entries
    assert error_of(models, draft) == (
        "draft d2t has shape [320], expected [256] (draft_vocab_size): fix draft_vocab_size in "
        "the draft's config.json or regenerate d2t")


def test_d2t_float_dtype(models, draft):
    import torch

    edit_weights(draft, d2t=torch.zeros(320, dtype=torch.float32))
    assert error_of(models, draft) == (
        "draft d2t has dtype F32, expected an integer dtype (it holds offsets target_id = "
        "draft_id + d2t[draft_id]): re-save d2t as int64")


def test_d2t_maps_outside_target_vocab(models, draft):
    import torch

    d2t = torch.zeros(320, dtype=torch.int64)
    d2t[300:] = 25  # draft ids 300..319 -> 325..344, past the target vocab
    d2t[5] = -6  # draft id 5 -> -1
    edit_weights(draft, d2t=d2t)
    assert error_of(models, draft) == (
        "draft d2t maps 21 draft ids outside the target vocabulary [0, 320) (draft id 5 -> -1; "
        "target_id = draft_id + d2t[draft_id]): regenerate d2t as offsets for this target, "
        f"or {FIX}")


def test_t2d_not_bool(models, draft):
    import torch

    edit_weights(draft, t2d=torch.ones(320, dtype=torch.int64))
    assert error_of(models, draft) == (
        "draft t2d has shape [320] dtype I64, expected [320] BOOL (one flag per target token): "
        f"regenerate t2d for this target, or {FIX}")


def test_sharded_weights_are_read(models, draft):
    import torch
    from safetensors.torch import load_file, save_file

    w = load_file(f"{draft}/model.safetensors")
    w["d2t"] = torch.full((320,), 1000, dtype=torch.int64)
    names = sorted(w)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: w[k] for k in keys}, f"{draft}/{shard}")
    json.dump({"weight_map": {k: s for s, keys in shards.items() for k in keys}},
              open(f"{draft}/model.safetensors.index.json", "w"))
    os.remove(f"{draft}/model.safetensors")
    assert error_of(models, draft).startswith("draft d2t maps 320 draft ids outside")


def test_pytorch_bin_skips_the_weight_checks(models, draft):
    os.rename(f"{draft}/model.safetensors", f"{draft}/pytorch_model.bin")
    results = validate_pair(models["target"], draft)
    assert (results[2].status, results[2].detail) == (
        "skipped", "weights are pytorch_model.bin, not safetensors; d2t not checked "
                   "(save the draft as safetensors to check it)")
    assert results[3].detail.endswith("fc not checked")


# ---------------------------------------------------------------- 4. aux layer ids

def test_aux_id_out_of_range(models, draft):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 1, 4]})
    assert error_of(models, draft) == (
        f"aux layer ids [0, 1, 4] from {IDS_KEY} have [4] out of range for a 4-layer target "
        f"(rule 'leaving': 0..3, SGLANG_EAGLE3_EXT_AUX_LAYER_RULE): {FIX_IDS}")


def test_final_layer_id_is_allowed(models, draft):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 2, 3]})
    ok = validate_pair(models["target"], draft)[3]  # 3 = leaving the last layer
    assert (ok.status, ok.detail) == ("ok", f"[0, 2, 3] from {IDS_KEY} (rule 'leaving'): the states "
                                            f"entering layers [1, 3, 4] of the 4-layer target, fc "
                                            f"input 192")
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 2, 4]})
    assert validate_pair(models["target"], draft, rule="entering")[3].status == "ok"  # 4 = "layer L"


def test_the_rule_comes_from_the_environment_by_default(models, draft, monkeypatch):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 2, 4]})
    monkeypatch.setenv("SGLANG_EAGLE3_EXT_AUX_LAYER_RULE", "entering")
    assert validate_pair(models["target"], draft)[3].status == "ok"
    monkeypatch.setenv("SGLANG_EAGLE3_EXT_AUX_LAYER_RULE", "sideways")
    assert "AUX_LAYER_RULE='sideways' is invalid: use one of leaving, entering" in error_of(models, draft)


def test_aux_ids_not_ascending(models, draft):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [2, 0, 1]})
    assert "are not ascending" in error_of(models, draft)


def test_aux_ids_repeat(models, draft):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 1, 1]})
    assert error_of(models, draft) == (
        f"aux layer ids [0, 1, 1] from {IDS_KEY} repeat layer(s) [1] (the draft's fc expects 3 "
        f"distinct states): {FIX_IDS}")


def test_default_aux_ids_repeat_on_a_shallow_target(models, draft):
    edit_config(draft, eagle_config=None)  # SpecForge default for L=4: [1, 1, 0]
    default = f"the default {{1, L//2-1, L-4}} (the draft's config names no {IDS_KEY})"
    assert error_of(models, draft).splitlines() == [
        f"aux layer ids [1, 1, 0] from {default} repeat layer(s) [1] (the draft's fc expects 3 "
        f"distinct states): {FIX_IDS}",
        f"aux layer ids [1, 1, 0] from {default} are not ascending (states are captured in layer "
        f"order, so the draft's fc would see them permuted): {FIX_IDS}"]


def test_top_level_ids_must_name_the_states_read(models, draft):
    # SGLang reads only eagle_config's ids; top-level ones (the GLM-4.7-FP8 fork's training config
    # has [2, 46, 89] there) only pass when they name the states read, in either convention.
    edit_config(draft, eagle_aux_hidden_state_layer_ids=[1, 2, 3])  # entering ids of [0, 1, 2]
    ok = validate_pair(models["target"], draft)[3]
    assert ok.detail.endswith("; top-level ids [1, 2, 3] (not read by SGLang) name the same states "
                              "as entering ids")
    edit_config(draft, eagle_aux_hidden_state_layer_ids=[0, 2, 3])
    assert error_of(models, draft) == (
        f"the draft's config.json names aux layer ids [0, 2, 3] at its top level, where SGLang "
        f"does not read them; it reads [0, 1, 2] from {IDS_KEY} (rule 'leaving'): the states "
        f"entering layers [1, 2, 3], which [0, 2, 3] name under neither rule: move the ids the "
        f"draft was trained on into {IDS_KEY} (and set SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=entering "
        f"if they are entering ids)")


def test_fc_width_disagrees_with_aux_ids(models, draft):
    edit_config(draft, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 2]})
    assert error_of(models, draft) == (
        f"draft fc.weight takes 192 inputs but 2 aux layer ids [0, 2] from {IDS_KEY} x hidden 64 "
        f"= 128 (the draft was trained on 3 target layers): {FIX_IDS}")


def test_num_aux_hidden_states_disagrees_with_aux_ids(models, draft):
    edit_config(draft, num_aux_hidden_states=2)
    assert error_of(models, draft) == (
        f"draft num_aux_hidden_states 2 != 3 aux layer ids [0, 1, 2] from {IDS_KEY}: make them "
        f"agree in the draft's config.json")


# ---------------------------------------------------------------- 5. tokenizer

@pytest.fixture
def draft_with_tokenizer(models, draft):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{models['target']}/{name}", draft)
    return draft


def test_same_tokenizer_passes(models, draft_with_tokenizer):
    tok = validate_pair(models["target"], draft_with_tokenizer)[4]
    assert (tok.status, tok.detail) == ("ok", "320 tokens; eos 0, pad 0")


def test_different_eos_token(models, draft_with_tokenizer):
    path = f"{draft_with_tokenizer}/tokenizer_config.json"
    cfg = json.load(open(path))
    cfg["eos_token"] = "<|end|>"  # id 4 in the tiny tokenizer
    json.dump(cfg, open(path, "w"))
    assert error_of(models, draft_with_tokenizer) == (
        f"draft eos token id 4 != target eos token id 0: {FIX}'s tokenizer, or remove the draft "
        f"folder's tokenizer files if they are stale copies")


def test_different_tokenizer_length(models, draft_with_tokenizer):
    path = f"{draft_with_tokenizer}/tokenizer.json"
    tok = json.load(open(path))
    tok["added_tokens"].append(dict(tok["added_tokens"][-1], id=320, content="<|extra|>"))
    json.dump(tok, open(path, "w"))
    assert error_of(models, draft_with_tokenizer) == (
        f"draft tokenizer has 321 tokens, target tokenizer 320: {FIX}'s tokenizer, or remove the "
        f"draft folder's tokenizer files if they are stale copies")


# ---------------------------------------------------------------- several problems, CLI

def test_all_problems_reported_first_line_first(models, draft):
    edit_config(draft, vocab_size=321, eagle_config={"eagle_aux_hidden_state_layer_ids": [0, 1, 1]})
    lines = error_of(models, draft).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("draft vocab_size 321 != target vocab_size 320")
    assert lines[1].startswith("aux layer ids [0, 1, 1]")
    assert [r.status for r in check_pair(models["target"], draft)].count("fail") == 2


def test_check_cli_main(models, draft, capsys):
    from sglang_eagle3_ext.check_cli import main

    assert main(["--target", models["target"], "--draft", models["random_draft"]]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert f" {name} " in out
    assert out.rstrip().endswith("all 5 checks passed or skipped")
    edit_config(draft, hidden_size=32)
    assert main(["--target", models["target"], "--draft", draft, "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False and [c["status"] for c in rep["checks"]][0] == "fail"


def test_check_command(models, draft):
    def run(d):
        return subprocess.run([sys.executable, "-m", "sglang_eagle3_ext", "check",
                               "--target", models["target"], "--draft", d],
                              capture_output=True, text=True, timeout=60, cwd="/")

    good = run(models["random_draft"])
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    for name in NAMES:
        assert any(line.split()[1:2] == [name] for line in lines), good.stdout
    edit_config(draft, vocab_size=321)
    bad = run(draft)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "  FAIL    vocab         draft vocab_size 321 != target vocab_size 320" in bad.stdout
    assert "1 of 5 checks failed" in bad.stdout
