"""EAGLE-3 capture for a target class that this SGLang has no adapter for.

An upstream adapter needs the model's layer loop to collect states; a class without one has no such
loop, so we read the states from outside with forward pre-hooks: the residual stream ENTERING layer
i is what the classic Llama-style loop hands that layer (`hidden_states + residual`, or the
embedding output before layer 0), and the final layer's output is what enters the final norm. The
states reach the logits processor as `aux_hidden_states`, which is all the EAGLE-3 worker reads; the
model's own `capture_aux_hidden_states` stays False, so its forward is not touched.

Layer loops that do not pass the residual as an argument (SGLang's newer residual_batch models)
cannot be read this way; those SGLang versions ship adapters for our targets, and a class there that
lacks one gets a clear error at startup instead of wrong states.
"""

from __future__ import annotations

import inspect
import logging

logger = logging.getLogger("sglang_eagle3_ext")


def _arg_reader(layer_cls):
    """(hidden, residual) from a decoder layer's call, or None if it takes no `residual`."""
    names = [n for n in inspect.signature(layer_cls.forward).parameters if n != "self"]
    if "residual" not in names or "hidden_states" not in names:
        return None
    hidden_at, residual_at = names.index("hidden_states"), names.index("residual")

    def read(args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[hidden_at]
        residual = kwargs.get("residual", args[residual_at] if len(args) > residual_at else None)
        return hidden, residual

    return read


def _stream(hidden, residual):
    # A fresh tensor: fused add-norms update hidden/residual in place later in the loop.
    return hidden.clone() if residual is None else hidden + residual


def install(model, entering: list[int], record) -> None:
    """Hooks on `model` capturing the states entering `entering` (len(layers) = final output);
    `record(model, mode, aux, batch)` is called once per forward with the states."""
    inner = model.model
    layers = inner.layers
    read = _arg_reader(type(layers[0]))
    if read is None:
        raise ValueError(
            f"{type(model).__name__} has no EAGLE-3 adapter in this SGLang and its decoder layers do "
            f"not take the residual as an argument, so sglang-eagle3-ext cannot read their states "
            f"from outside; serve it with an SGLang version whose {type(model).__name__} has "
            f"set_eagle3_layers_to_capture, or without --speculative-algorithm EAGLE3")
    for handle in getattr(model, "_eagle3_hook_handles", []):  # a second call replaces the hooks
        handle.remove()
    states: dict = {}
    handles = [inner.register_forward_pre_hook(lambda _m, _a: states.clear())]

    def at_layer(index):
        def hook(_module, args, kwargs):
            states[index] = _stream(*read(args, kwargs))
        return hook

    num_layers = len(layers)
    for index in entering:
        if index < num_layers:
            handles.append(layers[index].register_forward_pre_hook(at_layer(index), with_kwargs=True))
    if entering[-1] == num_layers:
        def at_norm(_module, args):
            states[num_layers] = _stream(args[0], args[1] if len(args) > 1 else None)
        handles.append(inner.norm.register_forward_pre_hook(at_norm))
    model._eagle3_hook_handles = handles

    processor = model.logits_processor
    original = getattr(processor, "_eagle3_original_forward", processor.forward)
    processor._eagle3_original_forward = original

    def forward(input_ids, hidden_states, lm_head, batch, *rest, **kwargs):
        if states and not rest and kwargs.get("aux_hidden_states") is None:
            aux = [states[i] for i in entering]
            states.clear()
            mode = getattr(getattr(batch, "forward_mode", None), "name", "?")
            record(model, mode, aux, batch)
            kwargs["aux_hidden_states"] = aux
        return original(input_ids, hidden_states, lm_head, batch, *rest, **kwargs)

    processor.forward = forward


def get_embed_and_head(self):
    """The EAGLE-3 worker shares the target's embedding with the draft through this."""
    return self.model.embed_tokens.weight, self.lm_head.weight


