"""Rotary embedding without CUDA: route to SGLang's own forward_native instead of vllm.

On a machine with no CUDA device (and SGLANG_USE_CPU_ENGINE unset, which would need sgl-kernel's
CPU build), SGLang's RotaryEmbedding.__init__ takes its "fallback kernel" branch and imports
`vllm._custom_ops.rotary_embedding`; without vllm the model fails to build. The branch is skipped
when the module flag `_is_cpu` is set, and the op then dispatches to `forward_native` (plain torch,
same math), so we set that flag: it is read nowhere else in that module.

DeepseekV2-family attention (GLM-5.x, DeepSeek-V3) asks `get_rope_wrapper(device="cpu")`, whose
CPU branch only knows DeepSeek's yarn scaling and asserts on a plain RoPE; a plain RoPE there goes
to the generic `get_rope` (the same class every other model gets).
"""

import importlib.util

from .base import Patch, Target

BASE = "sglang.srt.layers.rotary_embedding.base"
FACTORY = "sglang.srt.layers.rotary_embedding.factory"
# get_rope_cpu's leading parameters, which we pass on positionally (to it and to get_rope)
ROPE_PARAMS = ("head_size", "rotary_dim", "max_position", "base", "is_neox_style", "rope_scaling",
               "dtype", "partial_rotary_factor")


def wanted():
    import torch

    if torch.cuda.is_available():
        return "CUDA is available; SGLang's own rotary kernels are used"
    if importlib.util.find_spec("vllm") is not None:
        return "vllm is installed; its rotary kernel works"
    return None


def _plain_rope_to_get_rope(get_rope):
    def make(original):
        def get_rope_cpu(head_size, rotary_dim, max_position, base, is_neox_style=True,
                         rope_scaling=None, dtype=None, partial_rotary_factor=1.0, device=None):
            if rope_scaling is not None:
                return original(head_size, rotary_dim, max_position, base, is_neox_style,
                                rope_scaling, dtype, partial_rotary_factor, device)
            return get_rope(head_size, rotary_dim, max_position, base, is_neox_style,
                            None, dtype, partial_rotary_factor)

        return get_rope_cpu

    return make


def plan(p) -> str:
    p.get(f"{BASE}:RotaryEmbedding.forward_native")
    p.replace(f"{BASE}:_is_cpu", True)
    detail = "RotaryEmbedding -> forward_native (no CUDA, no vllm)"
    if p.has(f"{FACTORY}:get_rope_cpu"):
        p.params(f"{FACTORY}:get_rope_cpu", ROPE_PARAMS + ("device",), ordered=True)
        p.params(f"{FACTORY}:get_rope", ROPE_PARAMS, ordered=True)
        p.wrap(f"{FACTORY}:get_rope_cpu", _plain_rope_to_get_rope(p.get(f"{FACTORY}:get_rope")))
        detail += "; plain RoPE on the CPU branch -> get_rope"
    return detail


PATCH = Patch("cpu_rotary", "rotary embedding without CUDA/vllm -> forward_native", plan, wanted=wanted,
              targets=[Target(f"{BASE}:_is_cpu", "set"),
                       Target(f"{BASE}:RotaryEmbedding.forward_native", "read"),
                       Target(f"{FACTORY}:get_rope_cpu", params=ROPE_PARAMS + ("device",), ordered=True,
                              optional=True),
                       Target(f"{FACTORY}:get_rope", "read", params=ROPE_PARAMS, ordered=True,
                              optional=True)])
