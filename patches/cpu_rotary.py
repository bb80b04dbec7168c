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
import inspect

from .base import NotApplicable, import_or_skip, wrap_method


def apply() -> str:
    import torch

    if torch.cuda.is_available():
        raise NotApplicable("CUDA is available; SGLang's own rotary kernels are used")
    if importlib.util.find_spec("vllm") is not None:
        raise NotApplicable("vllm is installed; its rotary kernel works")
    base = import_or_skip("sglang.srt.layers.rotary_embedding.base")
    init_src = inspect.getsource(base.RotaryEmbedding.__init__)
    if "vllm._custom_ops" not in init_src or not hasattr(base, "_is_cpu"):
        raise NotApplicable("this SGLang's RotaryEmbedding does not import vllm's kernel")
    base._is_cpu = True
    detail = "RotaryEmbedding -> forward_native (no CUDA, no vllm)"
    factory = import_or_skip("sglang.srt.layers.rotary_embedding.factory")
    if hasattr(factory, "get_rope_cpu") and hasattr(factory, "get_rope"):
        wrap_method(factory, "get_rope_cpu", _plain_rope_to_get_rope(factory))
        detail += "; plain RoPE on the CPU branch -> get_rope"
    return detail


def _plain_rope_to_get_rope(factory):
    def make(original):
        def get_rope_cpu(head_size, rotary_dim, max_position, base, is_neox_style=True,
                         rope_scaling=None, dtype=None, partial_rotary_factor=1.0, device=None):
            if rope_scaling is not None:
                return original(head_size, rotary_dim, max_position, base, is_neox_style,
                                rope_scaling, dtype, partial_rotary_factor, device)
            return factory.get_rope(head_size, rotary_dim, max_position, base, is_neox_style,
                                    None, dtype, partial_rotary_factor)

        return get_rope_cpu

    return make
