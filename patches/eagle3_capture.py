"""One rule for EAGLE-3 aux layer ids on every target class, the same in every forward mode.

THE RULE: aux layer id i names the hidden state LEAVING decoder layer i (the residual stream after
layer i, before the final norm), 0 <= i <= L-1. It is what upstream SGLang's Llama / Qwen2 /
Glm4Moe adapters do (they capture at the entry of layer i+1) and what SpecForge trains with, so
its drafts work unchanged; id L-1 is the final layer's output, which upstream cannot capture (there
is no layer L to capture at) and this patch adds. Upstream's DeepSeek-style adapters
(Glm4MoeLite, DeepseekV2 / GLM-5.x) shift by one only when the first id is 1: here they follow the
rule like the others.

A draft trained with the other convention (id i = state ENTERING layer i, id L = final output) is
served with SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=entering (its launch preset sets it).

Where the installed SGLang has no adapter for a target class (older releases, forks), this patch
adds one that reads the states through forward hooks (eagle3_hooks.py), same rule. Other
Llama-style targets can be named in SGLANG_EAGLE3_EXT_EXTRA_TARGETS=module:Class,... .

Every target forward records which layers it captured per forward mode (one log line per new
mode; `/get_server_info` -> internal_states[i].eagle3_ext.aux_capture), so eager, CUDA-graph
capture and verify can be compared. SGLANG_EAGLE3_EXT_DUMP_AUX=DIR also saves the captured states
of the first forwards (debugging, tests).
"""

from __future__ import annotations

import logging
import os

from sglang_eagle3_ext.settings import BY_NAME, settings
from sglang_eagle3_ext.state import STATE

from .base import Patch, Target

logger = logging.getLogger("sglang_eagle3_ext")

RULE_ENV = BY_NAME["aux_layer_rule"].env
DUMP_ENV = BY_NAME["dump_aux"].env
EXTRA_TARGETS_ENV = BY_NAME["extra_targets"].env
DUMP_LIMIT = 16

# (module, class) of each target we serve, patched when its module is imported. GLM-5.x's
# GlmMoeDsaForCausalLM subclasses DeepseekV2ForCausalLM (in glm4_moe.py on SGLang 0.5.23, in its
# own module on others); naming it too shows its status even where it only inherits ours.
TARGETS = [
    ("sglang.srt.models.qwen2", "Qwen2ForCausalLM"),
    ("sglang.srt.models.llama", "LlamaForCausalLM"),
    ("sglang.srt.models.glm4_moe", "Glm4MoeForCausalLM"),
    ("sglang.srt.models.glm4_moe_lite", "Glm4MoeLiteForCausalLM"),
    ("sglang.srt.models.deepseek_v2", "DeepseekV2ForCausalLM"),
    ("sglang.srt.models.glm4_moe", "GlmMoeDsaForCausalLM"),
    ("sglang.srt.models.glm_moe_dsa", "GlmMoeDsaForCausalLM"),
]

# forward mode -> {"layers_entering": [...], "num_states": n}; read by server_info
CAPTURE_LOG: dict = STATE.aux_capture


def rule() -> str:
    return settings().aux_layer_rule


def entering_indices(layer_ids, num_layers: int, how: str) -> list[int]:
    """Aux ids -> indices of the layers at whose ENTRY the state is read (num_layers = final)."""
    shift = 1 if how == "leaving" else 0
    top = num_layers - 1 if how == "leaving" else num_layers
    ids = [int(i) for i in layer_ids]
    bad = [i for i in ids if not 0 <= i <= top]
    if bad:
        raise ValueError(f"EAGLE-3 aux layer ids {bad} out of range for a {num_layers}-layer target "
                         f"(rule '{how}': 0..{top}); fix eagle_config.eagle_aux_hidden_state_layer_ids "
                         f"or {RULE_ENV}")
    if len(set(ids)) != len(ids) or ids != sorted(ids):
        raise ValueError(f"EAGLE-3 aux layer ids {ids} must be distinct and ascending "
                         f"(states are captured in layer order)")
    return [i + shift for i in ids]


def _forward_mode(args, kwargs):
    batch = kwargs.get("forward_batch", args[2] if len(args) > 2 else None)
    mode = getattr(batch, "forward_mode", None)
    return getattr(mode, "name", str(mode)), batch


def _states(aux, count: int) -> list:
    """The captured states one by one, from a list or from a packed [tokens, count * hidden]
    tensor (DeepSeek-style models collect into SGLang's AuxHiddenStatePacker)."""
    if isinstance(aux, (list, tuple)):
        return list(aux)
    return list(aux.chunk(count, dim=-1)) if count else []


def _record(model, mode: str, aux, batch) -> None:
    packed = not isinstance(aux, (list, tuple))
    num_states = len(model._eagle3_entering) if packed else len(aux)
    entry = {"layers_entering": list(model._eagle3_entering), "num_states": num_states}
    if CAPTURE_LOG.get(mode) != entry:
        CAPTURE_LOG[mode] = entry
        logger.info("sglang-eagle3-ext: %s captures aux states entering layers %s (%d states)",
                    mode, entry["layers_entering"], num_states)
    dump_dir = settings().dump_aux
    if dump_dir and model._eagle3_dumped < DUMP_LIMIT:
        import torch

        os.makedirs(dump_dir, exist_ok=True)
        n = model._eagle3_dumped = model._eagle3_dumped + 1
        torch.save({"mode": mode, "layers_entering": entry["layers_entering"],
                    "input_ids": getattr(batch, "input_ids", None),
                    "aux": [a.detach().cpu() for a in _states(aux, num_states)]},
                   os.path.join(dump_dir, f"{os.getpid()}-{n:03d}-{mode}.pt"))


def _install_forward_wrapper(model) -> None:
    """Per instance: append the final pre-norm state when asked, and record each mode."""
    inner = model.model
    if getattr(inner, "_eagle3_wrapped", False):
        return
    original = inner.forward
    final = {}

    def grab_final(_module, args):
        x = args[0]
        residual = args[1] if len(args) > 1 else None
        final["state"] = x if residual is None else x + residual

    inner.norm.register_forward_pre_hook(grab_final)

    def forward(*args, **kwargs):
        final.clear()
        out = original(*args, **kwargs)
        if not model.capture_aux_hidden_states:
            return out
        hidden, aux = out if isinstance(out, tuple) else (out, [])
        if model._eagle3_capture_final:
            state = final["state"].clone()
            if isinstance(aux, list):
                aux = type(aux)(aux) if aux else []
                aux.append(state)
            elif isinstance(aux, tuple):
                aux = [*aux, state]
            else:  # packed [tokens, k * hidden] (AuxHiddenStatePacker): one more slice
                import torch

                aux = torch.cat([aux, state], dim=-1)
        mode, batch = _forward_mode(args, kwargs)
        _record(model, mode, aux, batch)
        return hidden, aux

    inner.forward = forward
    inner._eagle3_wrapped = True


def _resolve(model, layer_ids):
    """Indices of the layers whose entering states are captured (num_layers = the final output),
    recorded on the model; None off the last pipeline rank."""
    pp_group = getattr(model, "pp_group", None)
    if pp_group is not None and not pp_group.is_last_rank:
        return None
    num_layers = model.config.num_hidden_layers
    how = rule()
    if layer_ids is None:  # SpecForge's default, stated in the rule's terms
        layer_ids, how = [1, num_layers // 2 - 1, num_layers - 4], "leaving"
    entering = entering_indices(layer_ids, num_layers, how)
    model._eagle3_entering = entering
    model._eagle3_dumped = 0
    logger.info("sglang-eagle3-ext: %s aux layer ids %s (rule '%s') -> states entering layers %s",
                type(model).__name__, list(layer_ids), how, entering)
    return entering


def set_eagle3_layers_to_capture(self, layer_ids=None):
    """For classes with an upstream adapter: their layer loop collects, we choose the layers."""
    entering = _resolve(self, layer_ids)
    if entering is None:
        return
    num_layers = self.config.num_hidden_layers
    self.capture_aux_hidden_states = True
    self._eagle3_capture_final = entering[-1] == num_layers
    # The layer loop reads the state at layer entry; the final one comes from the norm's input.
    self.model.layers_to_capture = [i for i in entering if i < num_layers]
    _install_forward_wrapper(self)


def set_eagle3_layers_to_capture_by_hooks(self, layer_ids=None):
    """For classes without one: forward hooks collect (eagle3_hooks.py)."""
    from .eagle3_hooks import install

    entering = _resolve(self, layer_ids)
    if entering is not None:
        install(self, entering, _record)


# class name -> "patched" / "hooks (no upstream adapter)", filled as modules are imported
TARGET_STATUS: dict = STATE.aux_targets


def _plan_target(module_name: str, class_name: str):
    owner = f"{module_name}:{class_name}"

    def plan(p) -> str:
        cls = p.get(owner)
        if hasattr(cls, "set_eagle3_layers_to_capture"):
            # its layer loop collects (layers_to_capture, capture_aux_hidden_states); we choose
            p.get(f"{owner}.capture_aux_hidden_states", None)
            p.add(f"{owner}.set_eagle3_layers_to_capture", set_eagle3_layers_to_capture)
            how = "patched"
        else:  # this SGLang has no adapter for it: ours reads the layer inputs through hooks
            from .eagle3_hooks import get_embed_and_head

            p.add(f"{owner}.set_eagle3_layers_to_capture", set_eagle3_layers_to_capture_by_hooks)
            if not hasattr(cls, "get_embed_and_head"):
                p.add(f"{owner}.get_embed_and_head", get_embed_and_head)
            how = "hooks (no upstream adapter)"
            logger.info("sglang-eagle3-ext: %s has no EAGLE-3 adapter in this SGLang; adding one "
                        "(forward hooks)", class_name)
        TARGET_STATUS[class_name] = how
        return f"{class_name}: {how}, rule '{rule()}'"

    return plan


def _targets() -> list:
    extra = []
    for item in settings().extra_targets:
        module_name, sep, class_name = item.partition(":")
        if not sep or not class_name:
            from sglang_eagle3_ext.errors import Eagle3ConfigError

            raise Eagle3ConfigError(f"{EXTRA_TARGETS_ENV}: {item!r} is not 'module:Class' "
                                    f"(e.g. sglang.srt.models.granite:GraniteForCausalLM)")
        extra.append((module_name, class_name))
    return TARGETS + extra


def patches() -> list:
    """One deferred patch per target class: pending until SGLang imports its model module."""
    out, targets = [], _targets()
    classes = [c for _, c in targets]
    for module_name, class_name in targets:
        owner = f"{module_name}:{class_name}"
        where = f"@{module_name.rsplit('.', 1)[-1]}" if classes.count(class_name) > 1 else ""
        out.append(Patch(f"eagle3_capture.{class_name}{where}",
                         f"aux-layer rule on {class_name}", _plan_target(module_name, class_name),
                         on_import=module_name,
                         targets=[Target(f"{owner}.set_eagle3_layers_to_capture", "add"),
                                  Target(f"{owner}.get_embed_and_head", "add", optional=True)]))
    return out
