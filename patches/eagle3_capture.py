"""One aux-layer rule on every target class, the same in every forward mode.

The rule itself (what an id names, the default ids, validation) is sglang_eagle3_ext.aux_layers;
this patch makes every target read the states it names: each target's
`set_eagle3_layers_to_capture` is replaced by ours, and the final layer's output (which upstream
cannot capture: there is no layer L to capture at) is read where the final norm returns it. Where
the installed SGLang's own adapter would read other states for the same ids, one warning says so.

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

from sglang_eagle3_ext import aux_layers
from sglang_eagle3_ext.settings import BY_NAME, settings
from sglang_eagle3_ext.state import STATE

from .base import Patch, Target

logger = logging.getLogger("sglang_eagle3_ext")

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
    hooks = getattr(model, "_eagle3_final_hooks", None)  # None: eagle3_hooks.py reads them all
    final = model._eagle3_entering[-1] == model.config.num_hidden_layers
    entry = {"layers_entering": list(model._eagle3_entering), "num_states": num_states,
             "final_norm_hooked": bool(hooks) if hooks is not None else final}
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


def _packer_in(args, kwargs):
    """SGLang's AuxHiddenStatePacker among a decoder layer's arguments (DeepSeek-style layer loops
    hand it to the layers they capture at), or None (list-collecting loops)."""
    for value in (*args, *kwargs.values()):
        owner = getattr(value, "__self__", value)  # the packer itself or its bound capture method
        if callable(getattr(owner, "slot", None)) and callable(getattr(owner, "finalize", None)):
            return owner
    return None


def _read_final(model) -> None:
    """Read the final layer's output where the final norm hands it back, only while it is asked
    for: no hook (and no copy) otherwise."""
    inner = model.model
    for handle in model._eagle3_final_hooks:
        handle.remove()
    model._eagle3_final_hooks = []
    if not model._eagle3_capture_final:
        return
    state = model._eagle3_forward_state

    def find_packer(_module, args, kwargs):
        packer = _packer_in(args, kwargs)
        if packer is not None:
            state["packer"] = packer

    def at_final_norm(_module, args, output):
        # norm(hidden, residual) returns (normed, updated residual): that residual is the state
        # leaving the last layer, the same tensor upstream's own final_norm capture reads.
        stream = output[1] if isinstance(output, tuple) else args[0]
        packer = state.get("packer")
        if packer is not None:  # the packed buffer has a slot for it: one slice, no torch.cat
            packer.slot(stream).copy_(stream)
            state["written"] = True
        else:  # the norm's output storage is reused by later forwards: keep a copy
            state["final"] = stream.clone()

    hooks = [inner.norm.register_forward_hook(at_final_norm)]
    for index in inner.layers_to_capture:
        if index < len(inner.layers):
            hooks.append(inner.layers[index].register_forward_pre_hook(find_packer, with_kwargs=True))
    model._eagle3_final_hooks = hooks


def _install_forward_wrapper(model) -> None:
    """Per instance: the final layer's output appended when asked, and each mode recorded."""
    inner = model.model
    if getattr(inner, "_eagle3_wrapped", False):
        return
    original = inner.forward
    state = model._eagle3_forward_state

    def forward(*args, **kwargs):
        state.clear()
        mode, batch = _forward_mode(args, kwargs)
        final = model._eagle3_capture_final
        if final:  # an idle (zero-row) batch skips the final norm: no slot for it then
            is_idle = getattr(getattr(batch, "forward_mode", None), "is_idle", None)
            inner.layers_to_capture = model._eagle3_loop_layers[bool(is_idle and is_idle())]
        out = original(*args, **kwargs)
        if not model.capture_aux_hidden_states:
            return out
        hidden, aux = out if isinstance(out, tuple) else (out, [])
        if final and not state.get("written"):  # not in a packed buffer's slot already
            import torch

            last = state.get("final")
            if last is None:
                if hidden.shape[0]:
                    raise RuntimeError(f"sglang-eagle3-ext: {type(model).__name__}'s final norm "
                                       f"did not run, so its final layer's output was not read")
                last = torch.empty_like(hidden)  # zero rows: the final norm was skipped
            if isinstance(aux, torch.Tensor):  # packed, no slot for it (idle): zero rows
                aux = torch.cat([aux, last], dim=-1)
            else:
                aux = type(aux)(aux) if isinstance(aux, list) else list(aux)
                aux.append(last)
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
    resolved = aux_layers.resolve(layer_ids, num_layers, aux_layers.rule_from_env())
    model._eagle3_entering = resolved.entering
    model._eagle3_dumped = 0
    logger.info("sglang-eagle3-ext: %s aux layer ids %s (rule '%s') -> states entering layers %s",
                type(model).__name__, resolved.ids, resolved.rule, resolved.entering)
    return resolved


# (class name, ids) already compared with upstream in this process: one warning each
_COMPARED: set = set()
# class name -> the warning, where upstream would read other states; read by server_info
UPSTREAM_DIFFERS: dict = STATE.aux_upstream_differs


def _compare_with_upstream(model, layer_ids, resolved) -> None:
    """Warn once when the installed SGLang's own adapter would read other states for these ids."""
    upstream = next((UPSTREAM[c] for c in type(model).__mro__ if c in UPSTREAM), None)
    key = (type(model).__name__, None if layer_ids is None else tuple(layer_ids))
    if upstream is None or key in _COMPARED:
        return
    _COMPARED.add(key)
    try:  # ask upstream itself: its convention differs by class and by SGLang version
        upstream(model, layer_ids)
        theirs = list(model.model.layers_to_capture)
    except Exception as e:  # noqa: BLE001 - a refusal is a difference too, but not ours to raise
        theirs, line = None, (f"{key[0]}: SGLang's own adapter refuses aux layer ids {layer_ids} "
                              f"({type(e).__name__}: {e}); the plugin reads the states entering "
                              f"{resolved.entering}")
    if theirs is not None:
        line = aux_layers.upstream_difference(key[0], model.config.num_hidden_layers, resolved,
                                              theirs)
    if line:
        UPSTREAM_DIFFERS[key[0]] = line
        logger.warning("sglang-eagle3-ext: %s", line)


def set_eagle3_layers_to_capture(self, layer_ids=None):
    """For classes with an upstream adapter: their layer loop collects, we choose the layers."""
    resolved = _resolve(self, layer_ids)
    if resolved is None:
        return
    _compare_with_upstream(self, layer_ids, resolved)
    entering = resolved.entering
    num_layers = self.config.num_hidden_layers
    self.capture_aux_hidden_states = True
    self._eagle3_capture_final = entering[-1] == num_layers
    # The layer loop reads the state at layer entry; index L never comes up in it but sizes a
    # packing loop's buffer (AuxHiddenStatePacker) with a slot for the final state, which the
    # final norm's hook fills. Idle batches skip that norm, so they get the list without it.
    loop = [i for i in entering if i < num_layers]
    self._eagle3_loop_layers = {False: list(entering), True: loop}
    self.model.layers_to_capture = list(entering) if self._eagle3_capture_final else loop
    if not hasattr(self, "_eagle3_forward_state"):
        self._eagle3_forward_state, self._eagle3_final_hooks = {}, []
    _read_final(self)
    _install_forward_wrapper(self)


def set_eagle3_layers_to_capture_by_hooks(self, layer_ids=None):
    """For classes without one: forward hooks collect (eagle3_hooks.py)."""
    from .eagle3_hooks import install

    resolved = _resolve(self, layer_ids)
    if resolved is not None:
        install(self, resolved.entering, _record)


# class -> SGLang's own set_eagle3_layers_to_capture, kept to compare its reading with ours
UPSTREAM: dict = {}
# class name -> "patched" / "hooks (no upstream adapter)", filled as modules are imported
TARGET_STATUS: dict = STATE.aux_targets


def _plan_target(module_name: str, class_name: str):
    owner = f"{module_name}:{class_name}"

    def plan(p) -> str:
        cls = p.get(owner)
        if hasattr(cls, "set_eagle3_layers_to_capture"):
            # its layer loop collects (layers_to_capture, capture_aux_hidden_states); we choose
            current = cls.set_eagle3_layers_to_capture
            if current is not set_eagle3_layers_to_capture:  # not inherited from a class we patched
                UPSTREAM[cls] = current
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
        return f"{class_name}: {how}, rule '{aux_layers.rule_from_env()}'"

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
