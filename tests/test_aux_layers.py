"""The aux-layer rule on its own: what ids name, the default, one message per problem, and the
comparison with upstream's reading (the engine runs are in test_eagle3_capture.py)."""

import pytest

from sglang_eagle3_ext import aux_layers
from sglang_eagle3_ext.errors import Eagle3ConfigError

FIX = f"set {aux_layers.IDS_KEY} in the draft's config.json to the target layers it was trained on"


def test_leaving_is_upstream_plus_one_and_allows_the_final_layer():
    assert aux_layers.layers_to_read([1, 13, 24], 28, "leaving") == [2, 14, 25]  # Qwen2.5-7B draft
    assert aux_layers.layers_to_read([0, 1, 3], 4, "leaving") == [1, 2, 4]  # 4 = after the last layer


def test_entering_takes_ids_as_they_are():
    assert aux_layers.layers_to_read([2, 46, 92], 92, "entering") == [2, 46, 92]


def test_no_ids_means_specforges_default_in_the_leaving_rule_whatever_the_rule():
    r = aux_layers.resolve(None, 92, "entering")
    assert (r.ids, r.rule, r.entering, r.leaving, r.default) == (
        [1, 45, 88], "leaving", [2, 46, 89], [1, 45, 88], True)
    assert aux_layers.resolve([2, 46, 89], 92, "entering").entering == [2, 46, 89]


@pytest.mark.parametrize("ids,layers,rule,expected", [
    ([1, 2, 4], 4, "leaving", [
        f"aux layer ids [1, 2, 4] from X have [4] out of range for a 4-layer target (rule "
        f"'leaving': 0..3, SGLANG_EAGLE3_EXT_AUX_LAYER_RULE): {FIX}"]),
    ([1, 93], 92, "entering", [
        f"aux layer ids [1, 93] from X have [93] out of range for a 92-layer target (rule "
        f"'entering': 0..92, SGLANG_EAGLE3_EXT_AUX_LAYER_RULE): {FIX}"]),
    ([0, 1, 1], 4, "leaving", [
        f"aux layer ids [0, 1, 1] from X repeat layer(s) [1] (the draft's fc expects 3 distinct "
        f"states): {FIX}"]),
    ([2, 0, 1], 4, "leaving", [
        f"aux layer ids [2, 0, 1] from X are not ascending (states are captured in layer order, "
        f"so the draft's fc would see them permuted): {FIX}"]),
    ([1, 1, 0], 4, "leaving", [  # SpecForge's default for L=4: two problems, two lines
        f"aux layer ids [1, 1, 0] from X repeat layer(s) [1] (the draft's fc expects 3 distinct "
        f"states): {FIX}",
        f"aux layer ids [1, 1, 0] from X are not ascending (states are captured in layer order, "
        f"so the draft's fc would see them permuted): {FIX}"]),
    ("0,1,2", 4, "leaving", [f"aux layer ids '0,1,2' from X are not a list of layer ids: {FIX}"]),
])
def test_one_message_per_problem(ids, layers, rule, expected):
    assert aux_layers.problems(ids, layers, rule, source="X") == expected
    with pytest.raises(Eagle3ConfigError) as e:
        aux_layers.layers_to_read(ids, layers, rule, source="X")
    assert str(e.value).splitlines() == expected


def test_fc_width_must_be_one_hidden_state_per_id():
    assert aux_layers.problems([0, 2], 4, "leaving", "X", fc_inputs=192, hidden_size=64) == [
        f"draft fc.weight takes 192 inputs but 2 aux layer ids [0, 2] from X x hidden 64 = 128 "
        f"(the draft was trained on 3 target layers): {FIX}"]
    assert aux_layers.problems([0, 1, 2], 4, "leaving", "X", fc_inputs=192, hidden_size=64) == []


def test_rule_from_env(monkeypatch):
    monkeypatch.delenv(aux_layers.RULE_ENV, raising=False)
    assert aux_layers.rule_from_env() == "leaving"
    monkeypatch.setenv(aux_layers.RULE_ENV, " Entering ")
    assert aux_layers.rule_from_env() == "entering"
    monkeypatch.setenv(aux_layers.RULE_ENV, "leavnig")
    with pytest.raises(Eagle3ConfigError, match="SGLANG_EAGLE3_EXT_AUX_LAYER_RULE='leavnig' is invalid: use one of leaving, entering"):
        aux_layers.rule_from_env()


def test_ids_sglang_passes_come_from_eagle_config_only():
    nested = {"eagle_config": {"eagle_aux_hidden_state_layer_ids": [1, 2]}}
    assert aux_layers.ids_in_draft_config(nested) == [1, 2]
    top = {"eagle_aux_hidden_state_layer_ids": [2, 46, 89]}  # the GLM-4.7-FP8 training config
    assert aux_layers.ids_in_draft_config(top) is None and aux_layers.top_level_ids(top) == [2, 46, 89]


def test_rule_naming():
    assert aux_layers.rule_naming([2, 46, 89], 92, [2, 46, 89]) == "entering"
    assert aux_layers.rule_naming([1, 45, 88], 92, [2, 46, 89]) == "leaving"
    assert aux_layers.rule_naming([3, 47, 90], 92, [2, 46, 89]) is None


# Upstream's own readings in SGLang 0.5.23 (what its set_eagle3_layers_to_capture stores):
# Llama / Qwen2 / Glm4Moe: [i + 1 for i in ids]; Glm4MoeLite / DeepseekV2: +1 only when ids[0] == 1.
def test_no_warning_when_upstream_reads_the_same_states():
    ours = aux_layers.resolve([1, 13, 24], 28, "leaving")
    assert aux_layers.upstream_difference("Qwen2ForCausalLM", 28, ours, [2, 14, 25]) is None
    default = aux_layers.resolve(None, 28, "leaving")
    assert aux_layers.upstream_difference("Qwen2ForCausalLM", 28, default, [2, 14, 25]) is None


def test_warning_names_both_readings():
    ours = aux_layers.resolve([0, 1, 3], 4, "leaving")
    assert aux_layers.upstream_difference("DeepseekV3ForCausalLM", 4, ours, [0, 1, 3]) == (
        "DeepseekV3ForCausalLM: aux layer ids [0, 1, 3] are read as the states entering layers "
        "[1, 2, 4] (rule 'leaving'); SGLang's own DeepseekV3ForCausalLM adapter would read the "
        "states entering [0, 1, 3]: the draft is served as trained only if it was trained on the "
        "former")
    line = aux_layers.upstream_difference("Qwen2ForCausalLM", 4, ours, [1, 2, 4])
    assert "would read the states entering [1, 2] and not the final layer's output" in line
    entering = aux_layers.resolve([2, 46, 89], 92, "entering")
    assert "(rule 'entering')" in aux_layers.upstream_difference("Glm4MoeForCausalLM", 92, entering,
                                                                 [3, 47, 90])
    assert aux_layers.upstream_difference("GraniteForCausalLM", 4, ours, None) is None  # no adapter
