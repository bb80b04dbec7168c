"""Does a preset fit these model folders? The pairing checks plus what the preset assumes.

The pairing checks (sglang_eagle3_ext.pairing_check) run under the preset's layer-id rule; on top
come the preset's own assumptions: the target's architecture and shapes, the draft's aux layer ids
(a draft trained on other layers would silently accept ~1 token per step with this preset), the
tree shape and tensor-parallel split. Config files only: seconds, no GPU.
"""

from __future__ import annotations

import os

from ..draft_check import _looks_local, read_local_config
from ..errors import Eagle3ConfigError
from ..pairing_check import CheckResult, _get, check_pair, default_aux_layer_ids
from ..patches.eagle3_capture import RULE_ENV
from .presets import Preset


def _with_rule(rule: str, fn, *args):
    """Run fn with the layer-id rule the server will run with (the pairing check reads the env)."""
    before = os.environ.get(RULE_ENV)
    os.environ[RULE_ENV] = rule
    try:
        return fn(*args)
    finally:
        if before is None:
            os.environ.pop(RULE_ENV, None)
        else:
            os.environ[RULE_ENV] = before


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
        have = _get(tcfg, key)
        if have != want[key]:
            out.append(CheckResult("preset_target", "fail",
                                   f"target {key} {have} != {want[key]} of {want['model']}, which "
                                   f"preset {preset.id} is for: {fix}"))
    tp = preset.server_args().get("tp_size", 1)
    heads = _get(tcfg, "num_attention_heads")
    if isinstance(heads, int) and heads % tp:
        out.append(CheckResult("preset_target", "fail",
                               f"{heads} attention heads do not split over tp_size {tp}: pass "
                               f"--tp-size with a divisor of {heads}"))
    return out or [CheckResult("preset_target", "ok", f"{want['architecture']}, hidden "
                               f"{want['hidden_size']}, {want['num_hidden_layers']} layers, TP {tp}")]


def check_draft_ids(preset: Preset, tcfg: dict, dcfg: dict) -> list[CheckResult]:
    want = preset.draft["aux_layer_ids"]
    ids = (dcfg.get("eagle_config") or {}).get("eagle_aux_hidden_state_layer_ids")
    source = "eagle_config.eagle_aux_hidden_state_layer_ids"
    if ids is None:
        L = _get(tcfg, "num_hidden_layers")
        ids, source = default_aux_layer_ids(L) if isinstance(L, int) else None, "the default ids"
    if ids != want:
        return [CheckResult("preset_draft", "fail",
                            f"draft aux layer ids {ids} ({source}) != {want} of "
                            f"{preset.draft['model']}, which preset {preset.id} is for (rule "
                            f"'{preset.rule}'): this draft was trained on other layers; launch "
                            f"sglang.launch_server directly and set {RULE_ENV} to the convention "
                            f"it was trained with")]
    return [CheckResult("preset_draft", "ok", f"aux layer ids {ids}, rule '{preset.rule}' "
                                              f"({preset.draft.get('why', 'see the preset')})")]


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
    if not (_looks_local(str(target_dir)) and _looks_local(str(draft_dir))):
        return out + [CheckResult("preset_target", "skipped", "hub ids: folders checked by "
                                  "SGLang at load time")]
    try:
        tcfg = read_local_config(str(target_dir), "target")
        dcfg = read_local_config(str(draft_dir), "draft")
    except Eagle3ConfigError as e:
        return out + [CheckResult("configs", "fail", str(e))]
    out += check_target(preset, tcfg) + check_draft_ids(preset, tcfg, dcfg)
    return out + _with_rule(preset.rule, check_pair, target_dir, draft_dir)
