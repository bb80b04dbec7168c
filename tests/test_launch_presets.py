"""Launch presets: each validates against config-only folders with its models' real shapes, the
launch CLI builds a command SGLang's own argument parser accepts, misfits are refused clearly."""

import argparse
import json
import os
import subprocess
import sys

import pytest

from sglang_eagle3_ext.launch.presets import launch_command, load_presets
from sglang_eagle3_ext.launch.validate import validate_preset

# Shapes from the models' public config.json files (GLM-5.1 assumed to share GLM-5's).
TARGETS = {
    "qwen25-7b": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584,
                      intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                      num_key_value_heads=4, vocab_size=152064),
    "llama31-8b": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=4096,
                       intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, vocab_size=128256),
    "glm47-fp8": dict(architectures=["Glm4MoeForCausalLM"], model_type="glm4_moe", hidden_size=5120,
                      intermediate_size=12288, moe_intermediate_size=1536, num_hidden_layers=92,
                      num_attention_heads=96, num_key_value_heads=8, head_dim=128,
                      n_routed_experts=160, num_experts_per_tok=8, first_k_dense_replace=3,
                      partial_rotary_factor=0.5, vocab_size=151552,
                      quantization_config={"quant_method": "fp8"}),
    "glm47-flash": dict(architectures=["Glm4MoeLiteForCausalLM"], model_type="glm4_moe_lite",
                        hidden_size=2048, intermediate_size=10240, moe_intermediate_size=1536,
                        num_hidden_layers=47, num_attention_heads=20, num_key_value_heads=20,
                        q_lora_rank=768, kv_lora_rank=512, qk_nope_head_dim=192,
                        qk_rope_head_dim=64, v_head_dim=256, n_routed_experts=64,
                        num_experts_per_tok=4, vocab_size=154880),
    "glm51": dict(architectures=["GlmMoeDsaForCausalLM"], model_type="glm_moe_dsa", hidden_size=6144,
                  intermediate_size=12288, moe_intermediate_size=2048, num_hidden_layers=78,
                  num_attention_heads=64, num_key_value_heads=64, q_lora_rank=2048,
                  kv_lora_rank=512, qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256,
                  n_routed_experts=256, num_experts_per_tok=8, vocab_size=154880),
}


def write_config(folder, cfg):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    return str(folder)


def draft_config(target, aux_ids, top_level=False):
    """A draft config.json; aux_ids under eagle_config (read by SGLang) or at the top level (as
    the GLM-4.7-FP8 draft's training config has them: not read by SGLang)."""
    h = target["hidden_size"]
    cfg = dict(architectures=["LlamaForCausalLMEagle3"], model_type="llama", hidden_size=h,
               intermediate_size=4 * h, num_hidden_layers=1, num_attention_heads=h // 128,
               num_key_value_heads=max(1, h // 512), head_dim=128, vocab_size=target["vocab_size"],
               draft_vocab_size=32000)
    if aux_ids is not None and top_level:
        cfg["eagle_aux_hidden_state_layer_ids"] = aux_ids
    elif aux_ids is not None:
        cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": aux_ids}
    return cfg


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> (target dir, draft dir); the Llama draft names no ids (SGLang's default applies),
    the GLM-4.7-FP8 draft has them at the top level, as its training config does."""
    root = tmp_path_factory.mktemp("preset-models")
    presets = {p.data["name"]: p for p in load_presets().values()}
    out = {}
    for name, tcfg in TARGETS.items():
        ids = None if name == "llama31-8b" else presets[name].draft["aux_layer_ids"]
        out[name] = (write_config(root / name, tcfg),
                     write_config(root / f"{name}-eagle3",
                                  draft_config(tcfg, ids, top_level=name == "glm47-fp8")))
    return out


def failures(results):
    return [f"{r.name}: {r.detail}" for r in results if r.status == "fail"]


def test_there_is_a_low_latency_and_a_throughput_preset_per_published_draft():
    presets = load_presets()
    assert {p.data["name"] for p in presets.values()} == set(TARGETS)
    for name in TARGETS:
        low, high = presets[f"{name}-low-latency"], presets[f"{name}-throughput"]
        assert (low.batch_size, high.batch_size) == (1, 32)
        low_tree = low.server_args()["speculative_eagle_topk"] * low.server_args()["speculative_num_steps"]
        high_tree = high.server_args()["speculative_eagle_topk"] * high.server_args()["speculative_num_steps"]
        assert low_tree >= high_tree  # low latency: the wider (or same) tree
    assert presets["glm47-fp8-low-latency"].rule == "entering"
    assert presets["glm51-throughput"].server_args()["speculative_num_draft_tokens"] == 4


@pytest.mark.parametrize("preset_id", sorted(load_presets()))
def test_every_preset_fits_its_real_shaped_models(preset_id, folders):
    preset = load_presets()[preset_id]
    results = validate_preset(preset, *folders[preset.data["name"]])
    assert not failures(results), failures(results)
    ran = {r.name for r in results if r.status == "ok"}
    assert {"preset_tree", "preset_target", "preset_draft", "hidden_size", "vocab", "aux_layer_ids"} <= ran


def test_every_preset_command_parses_with_sglangs_own_arguments():
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(allow_abbrev=False)  # exact flags only
    ServerArgs.add_cli_args(parser)
    for preset in load_presets().values():
        cmd, env = launch_command(preset)
        args = parser.parse_args(cmd[3:])
        assert args.speculative_algorithm == "EAGLE3" and args.enable_metrics
        for key, value in preset.server_args().items():
            assert getattr(args, key) == value, (preset.id, key)
        base, base_env = launch_command(preset, baseline=True)
        assert parser.parse_args(base[3:]).speculative_algorithm is None and not base_env


def test_the_glm47_fp8_draft_with_top_level_ids_fits(folders):
    # SGLang passes no ids for it, so the default, leaving {1, 45, 88}, is read: the states
    # entering [2, 46, 89], which the draft was trained on and the preset reads.
    results = {r.name: r for r in validate_preset(load_presets()["glm47-fp8-low-latency"],
                                                  *folders["glm47-fp8"])}
    assert results["preset_draft"].status == "ok", results["preset_draft"].detail
    assert results["preset_draft"].detail.startswith(
        "[1, 45, 88] from the default {1, L//2-1, L-4} (the draft's config names no "
        "eagle_config.eagle_aux_hidden_state_layer_ids) (rule 'leaving'): the states entering "
        "layers [2, 46, 89], as thoughtworks/GLM-4.7-FP8-Eagle3 was trained")
    assert results["aux_layer_ids"].status == "ok"
    assert results["aux_layer_ids"].detail.endswith(
        "top-level ids [2, 46, 89] (not read by SGLang) name the same states as entering ids")


def test_the_same_layers_named_the_other_way_are_refused_with_the_fix(folders, tmp_path):
    # SpecForge's default ids in its own (leaving) terms under the preset's 'entering' rule
    target, _ = folders["glm47-fp8"]
    draft = write_config(tmp_path / "d", draft_config(TARGETS["glm47-fp8"], [1, 45, 88]))
    msgs = failures(validate_preset(load_presets()["glm47-fp8-low-latency"], target, draft))
    assert msgs == [
        "preset_draft: draft aux layer ids [1, 45, 88] from "
        "eagle_config.eagle_aux_hidden_state_layer_ids (rule 'entering') make the target read the "
        "states entering layers [1, 45, 88], but thoughtworks/GLM-4.7-FP8-Eagle3, which preset "
        "glm47-fp8-low-latency is for, was trained on the states entering [2, 46, 89]: they name "
        "thoughtworks/GLM-4.7-FP8-Eagle3's layers as leaving ids: set "
        "eagle_config.eagle_aux_hidden_state_layer_ids to [2, 46, 89] (entering ids), or launch "
        "sglang.launch_server directly with SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=leaving"]


def test_a_draft_trained_on_other_layers_is_refused(folders, tmp_path):
    target, _ = folders["glm47-fp8"]
    draft = write_config(tmp_path / "d", draft_config(TARGETS["glm47-fp8"], [3, 47, 90]))
    msgs = failures(validate_preset(load_presets()["glm47-fp8-low-latency"], target, draft))
    assert len(msgs) == 1 and msgs[0].endswith(
        "this draft was trained on other layers than thoughtworks/GLM-4.7-FP8-Eagle3: launch "
        "sglang.launch_server directly (this preset sets SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=entering)")


def test_a_draft_without_ids_where_the_preset_reads_other_layers(folders, tmp_path):
    from sglang_eagle3_ext.launch.presets import Preset

    base = load_presets()["qwen25-7b-throughput"]
    data = dict(base.data, draft=dict(base.data["draft"], aux_layer_ids=[2, 13, 25]))
    target, _ = folders["qwen25-7b"]
    draft = write_config(tmp_path / "d", draft_config(TARGETS["qwen25-7b"], None))
    msgs = failures(validate_preset(Preset(base.id, data, base.variant), target, draft))
    assert len(msgs) == 1 and msgs[0].endswith(
        "if it is thoughtworks/Qwen2.5-7B-Instruct-Eagle3, add "
        "eagle_config.eagle_aux_hidden_state_layer_ids: [2, 13, 25] to its config.json; otherwise "
        "it was trained on other layers: launch sglang.launch_server directly (this preset sets "
        "SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=leaving)")


def test_every_preset_value_names_its_source(tmp_path):
    from sglang_eagle3_ext.launch.presets import HERE, PresetError

    for preset in load_presets().values():
        for key in [*preset.data["server_args"], *preset.data["variants"], "draft.aux_layer_ids"]:
            assert preset.sources[key], (preset.id, key)
    data = json.load(open(os.path.join(HERE, "glm51.json")))
    del data["sources"]["tp_size"]
    (tmp_path / "glm51.json").write_text(json.dumps(data))
    with pytest.raises(PresetError, match=r"sources.tp_size missing or not one of model card"):
        load_presets(str(tmp_path))


def test_glm51_runs_the_cards_chain():
    # SGLang 0.5.23 refuses topk > 1 with the DSA attention backend (64-token pages) it picks
    presets = load_presets()
    for variant in ("low-latency", "throughput"):
        args = presets[f"glm51-{variant}"].server_args()
        assert (args["speculative_num_steps"], args["speculative_eagle_topk"],
                args["speculative_num_draft_tokens"]) == (3, 1, 4)


def test_the_wrong_target_is_refused(folders):
    target, _ = folders["llama31-8b"]
    _, draft = folders["qwen25-7b"]
    msgs = failures(validate_preset(load_presets()["qwen25-7b-throughput"], target, draft))
    assert any("LlamaForCausalLM" in m and "Qwen2ForCausalLM" in m for m in msgs), msgs
    assert any("hidden_size" in m for m in msgs), msgs


def run_cli(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_launch_print_shows_rule_simulation_and_overrides(folders):
    target, draft = folders["glm47-fp8"]
    r = run_cli("-m", "sglang_eagle3_ext.launch", "glm47-fp8-low-latency", "--model-path", target,
                "--draft-path", draft, "--print", "--simulate-accept-length", "2.76",
                "--port", "31000", "--tp-size", "4")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=entering SGLANG_SIMULATE_ACC_LEN=2.76 ")
    assert f"--speculative-draft-model-path {draft}" in line
    assert "--speculative-eagle-topk 4 --speculative-num-draft-tokens 6" in line
    assert line.endswith("--enable-metrics --port 31000 --tp-size 4")  # extras last: they win


def test_launch_refuses_folders_that_do_not_fit(folders):
    target, draft = folders["qwen25-7b"]
    r = run_cli("-m", "sglang_eagle3_ext.launch", "glm47-flash-low-latency", "--model-path", target,
                "--draft-path", draft, "--print")
    assert r.returncode == 1 and "Glm4MoeLiteForCausalLM" in r.stderr and "--no-check" in r.stderr
    r = run_cli("-m", "sglang_eagle3_ext.launch", "glm47-flash-low-latency", "--model-path", target,
                "--draft-path", draft, "--print", "--no-check")
    assert r.returncode == 0 and "sglang.launch_server" in r.stdout


def test_launch_list_and_check_cli_with_preset(folders):
    r = run_cli("-m", "sglang_eagle3_ext.launch", "--list")
    assert r.returncode == 0 and all(pid in r.stdout for pid in load_presets())
    target, draft = folders["glm51"]
    r = run_cli("-m", "sglang_eagle3_ext", "check", "--target", target, "--draft", draft,
                "--preset", "glm51-throughput", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True
    r = run_cli("-m", "sglang_eagle3_ext", "check", "--target", target, "--draft", draft,
                "--preset", "qwen25-7b-throughput")
    assert r.returncode == 1 and "FAIL" in r.stdout


def test_launch_refuses_a_simulated_accept_length_the_tree_cannot_reach():
    r = run_cli("-m", "sglang_eagle3_ext.launch", "qwen25-7b-throughput", "--print",
                "--simulate-accept-length", "5")
    assert r.returncode == 2 and "between 1 and 4" in r.stderr
