"""Captured target states enter the EAGLE-3 draft in the draft's own dtype.

SGLang resolves `--dtype auto` per model from each config.json, so a bf16 target (or an FP8
target, whose activations are bf16) with an fp16 or fp32 draft is a valid launch. The draft's
CUDA-graph path copies the target states into a buffer of the draft dtype (an implicit cast), but
its eager path feeds them straight into `fc` (and its norms): "expected both operands to have the
same dtype" on the first draft-extend. We cast once, at the entry of the draft model, so eager
and CUDA-graph paths see the same values.
"""

import logging

from .base import Patch, Target

MODULE = "sglang.srt.models.llama_eagle3"

logger = logging.getLogger("sglang_eagle3_ext")
_logged = set()


def _draft_dtype(model):
    # fc is the first consumer; the embedding may be the target's (shared), so not its dtype.
    for name in ("fc", "embed_tokens"):
        weight = getattr(getattr(model, name, None), "weight", None)
        if weight is not None and weight.is_floating_point() and weight.element_size() > 1:
            return weight.dtype
    return None


def cast_target_states(model, forward_batch) -> None:
    spec_info = getattr(forward_batch, "spec_info", None)
    states = getattr(spec_info, "hidden_states", None)
    want = _draft_dtype(model)
    if states is None or want is None or states.dtype == want or not states.is_floating_point():
        return
    if (states.dtype, want) not in _logged:
        _logged.add((states.dtype, want))
        logger.info("sglang-eagle3-ext: casting target hidden states %s -> draft dtype %s",
                    states.dtype, want)
    spec_info.hidden_states = states.to(want)
    _cast_shared_embedding(model, want)


def _cast_shared_embedding(model, want) -> None:
    """EAGLE-3 drafts usually take the target's embedding (set_embed swaps the weight, keeps the
    module): its output is in the target's dtype and meets the draft's states in each layer."""
    embed = getattr(model, "embed_tokens", None)
    if embed is None or getattr(embed, "_eagle3_ext_cast", None) == want:
        return

    def cast_output(_module, _args, out):
        return out.to(want) if out.is_floating_point() and out.dtype != want else out

    if getattr(embed, "_eagle3_ext_hook", None) is not None:
        embed._eagle3_ext_hook.remove()
    embed._eagle3_ext_hook = embed.register_forward_hook(cast_output)
    embed._eagle3_ext_cast = want


def _make_forward(original):
    def forward(self, input_ids, positions, forward_batch, *args, **kwargs):
        cast_target_states(self, forward_batch)
        return original(self, input_ids, positions, forward_batch, *args, **kwargs)

    return forward


def plan(p) -> str:
    p.wrap(f"{MODULE}:LlamaModel.forward", _make_forward)
    return "llama_eagle3.LlamaModel.forward casts target states to the draft dtype"


PATCH = Patch("draft_dtype", "target states cast to the draft's dtype (bf16/FP8 target, fp16/fp32 draft)",
              plan, on_import=MODULE,
              targets=[Target(f"{MODULE}:LlamaModel.forward",
                              params=("input_ids", "positions", "forward_batch"), ordered=True)])
