"""Does a preset fit these model folders? The pairing checks plus what the preset assumes.

The pairing checks (sglang_eagle3_ext.pairing_check) run under the preset's layer-id rule; on top
come the preset's own assumptions: the target's architecture and shapes, the states the draft's
aux layer ids make the target read (a draft trained on other layers would silently accept ~1
token per step with this preset), the tree shape and tensor-parallel split. Config files only:
seconds, no GPU.
"""

from __future__ import annotations

from .. import aux_layers
from ..errors import Eagle3ConfigError
from ..pairing_check import CheckResult, check_pair, config_value, looks_local, read_local_config
from .presets import Preset


def check_target(preset: Preset, tcfg: dict) -> list[CheckResult]:
    want = preset.target
    fix = f"use the preset made for this target (python -m sglang_eagle3_ext.launch --list)"
    archs = tcfg.get("architectures") or []
    out = []
    if want["architecture"] not in archs:
        out.append(CheckResult("preset_target", "fail",
                               f"target architecture {archs} is not {want['architecture']}, "
                               f"which preset {preset.id} is for: {fix}"))
    for key in ("hidden_size", "num_hidden_layers"):
        have = config_value(tcfg, key)
        if have != want[key]:
            out.append(CheckResult("preset_target", "fail",
                                   f"target {key} {have} != {want[key]} of {want['model']}, which "
                                   f"preset {preset.id} is for: {fix}"))
    tp = preset.server_args().get("tp_size", 1)
    heads = config_value(tcfg, "num_attention_heads")
    if isinstance(heads, int) and heads % tp:
        out.append(CheckResult("preset_target", "fail",
                               f"{heads} attention heads do not split over tp_size {tp}: pass "
                               f"--tp-size with a divisor of {heads}"))
    return out or [CheckResult("preset_target", "ok", f"{want['architecture']}, hidden "
                               f"{want['hidden_size']}, {want['num_hidden_layers']} layers, TP {tp}")]


def check_draft_ids(preset: Preset, tcfg: dict, dcfg: dict) -> list[CheckResult]:
    """Compare the states the server will read for this draft (its eagle_config ids under the
    preset's rule, or the default when it names none) with those the preset's draft was trained
    on; ids elsewhere in its config are the pairing check's business."""
    L = config_value(tcfg, "num_hidden_layers")
    L = L if isinstance(L, int) else preset.target["num_hidden_layers"]
    trained = preset.draft["model"]
    want = aux_layers.layers_to_read(preset.draft["aux_layer_ids"], preset.target["num_hidden_layers"],
                                     preset.rule, f"preset {preset.id}")
    ids = aux_layers.ids_in_draft_config(dcfg)
    try:
        read = aux_layers.resolve(ids, L, preset.rule)
    except Eagle3ConfigError:
        return [CheckResult("preset_draft", "fail", f"draft aux layer ids {ids} do not fit the "
                            f"{L}-layer target under rule '{preset.rule}' (see aux_layer_ids)")]
    source = aux_layers.DEFAULT_SOURCE if read.default else aux_layers.IDS_KEY
    if read.entering == want:
        return [CheckResult("preset_draft", "ok",
                            f"{read.ids} from {source} (rule '{read.rule}'): the states entering "
                            f"layers {want}, as {trained} was trained "
                            f"({preset.draft.get('why', 'see the preset')})")]
    launch = (f"launch sglang.launch_server directly (this preset sets "
              f"{aux_layers.RULE_ENV}={preset.rule})")
    if read.default:
        advice = (f"if it is {trained}, add {aux_layers.IDS_KEY}: {preset.draft['aux_layer_ids']} "
                  f"to its config.json; otherwise it was trained on other layers: {launch}")
    else:
        other = [r for r in aux_layers.RULES if r != preset.rule][0]
        if aux_layers.rule_naming(read.ids, L, want) == other:
            advice = (f"they name {trained}'s layers as {other} ids: set {aux_layers.IDS_KEY} to "
                      f"{preset.draft['aux_layer_ids']} ({preset.rule} ids), or launch "
                      f"sglang.launch_server directly with {aux_layers.RULE_ENV}={other}")
        else:
            advice = f"this draft was trained on other layers than {trained}: {launch}"
    return [CheckResult("preset_draft", "fail",
                        f"draft aux layer ids {read.ids} from {source} (rule '{read.rule}') make "
                        f"the target read the states entering layers {read.entering}, but "
                        f"{trained}, which preset {preset.id} is for, was trained on the states "
                        f"entering {want}: {advice}")]


def check_tree(preset: Preset) -> list[CheckResult]:
    args = preset.server_args()
    steps = args.get("speculative_num_steps")
    topk = args.get("speculative_eagle_topk")
    n = args.get("speculative_num_draft_tokens")
    if not all(isinstance(v, int) and v >= 1 for v in (steps, topk, n)):
        return [CheckResult("preset_tree", "fail", f"preset {preset.id} needs integer "
                            f"speculative_num_steps / _eagle_topk / _num_draft_tokens")]
    # A chain verifies the root plus one token per step; a tree at most topk per step.
    if (topk == 1 and n != steps + 1) or not 2 <= n <= steps * topk + 1:
        return [CheckResult("preset_tree", "fail",
                            f"preset {preset.id}: {n} draft tokens do not fit {steps} steps x "
                            f"topk {topk} (chain: steps + 1; tree: 2..steps*topk+1)")]
    return [CheckResult("preset_tree", "ok", f"steps {steps} / topk {topk} / draft tokens {n}")]


def validate_preset(preset: Preset, target_dir: str, draft_dir: str) -> list[CheckResult]:
    """Every check of the preset against local model folders (hub ids: preset checks skipped)."""
    out = check_tree(preset)
    if not (looks_local(str(target_dir)) and looks_local(str(draft_dir))):
        return out + [CheckResult("preset_target", "skipped", "hub ids: folders checked by "
                                  "SGLang at load time")]
    try:
        tcfg = read_local_config(str(target_dir), "target")
        dcfg = read_local_config(str(draft_dir), "draft")
    except Eagle3ConfigError as e:
        return out + [CheckResult("configs", "fail", str(e))]
    out += check_target(preset, tcfg) + check_draft_ids(preset, tcfg, dcfg)
    return out + check_pair(target_dir, draft_dir, rule=preset.rule)
