"""Rotary embedding without CUDA: route to SGLang's own forward_native instead of vllm.

On a machine with no CUDA device (and SGLANG_USE_CPU_ENGINE unset, which would need sgl-kernel's
CPU build), SGLang's RotaryEmbedding.__init__ takes its "fallback kernel" branch and imports
`vllm._custom_ops.rotary_embedding`; without vllm the model fails to build. The branch is skipped
when the module flag `_is_cpu` is set, and the op then dispatches to `forward_native` (plain torch,
same math), so we set that flag: it is read nowhere else in that module.
"""

import importlib.util
import inspect

from .base import NotApplicable, import_or_skip


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
    return "RotaryEmbedding -> forward_native (no CUDA, no vllm)"
