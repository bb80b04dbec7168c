"""Target-verify attention on our Triton tree-attention kernel (kernels/tree_attention.py).

SGLang's Triton backend already has the hook: in `forward_extend`, on TARGET_VERIFY, it calls
`self.verify_splitkv_fwd(...)` when `self.use_verify_splitkv` is set, and falls back to its
serial-prefix extend kernel when that call returns False. Upstream sets it only for its own
split-KV kernel on AMD gfx95 with topk == 1. We set it, per backend instance, to ours (any topk,
GQA and MLA); prefill, decode and draft passes keep SGLang's kernels. Cases ours does not cover
(attention sinks, sliding window, xai temperature) return False and run SGLang's kernel.

Off by default until a GPU benchmark shows it wins: SGLANG_EAGLE3_EXT_TREE_ATTENTION=on.
"""

import inspect
import logging
import os

from .base import NotApplicable, patch_when_imported, wrap_method

logger = logging.getLogger("sglang_eagle3_ext")

ENV = "SGLANG_EAGLE3_EXT_TREE_ATTENTION"
BACKEND_MODULE = "sglang.srt.layers.attention.triton_backend"
CALLS = {"ran": 0, "fell_back": 0}  # per process, reported in /get_server_info


def enabled() -> bool:
    value = os.environ.get(ENV, "off").strip().lower()
    if value not in ("on", "off", "1", "0", ""):
        raise ValueError(f"{ENV}={value!r}: use 'on' or 'off'")
    return value in ("on", "1")


def verify_fwd_for(backend):
    """A `verify_splitkv_fwd` for this backend instance: writes o and returns True, or False."""
    from sglang_eagle3_ext.kernels.tree_attention import tree_attention_fwd

    page_size = getattr(backend, "page_size", 1)

    def verify(q, k, v, o, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices, custom_mask,
               causal, mask_indptr, max_extend_len, k_descale, v_descale, sm_scale,
               logit_cap=0.0, sliding_window_size=-1, sinks=None, window_kv_offsets=None,
               xai_temperature_len=-1, **_):
        if (sinks is not None or window_kv_offsets is not None
                or (sliding_window_size or -1) > 0 or (xai_temperature_len or -1) > 0):
            CALLS["fell_back"] += 1
            return False
        tree_attention_fwd(q, k, v, o, k_buffer, v_buffer, qo_indptr, kv_indptr, kv_indices,
                           custom_mask, causal, mask_indptr, max_extend_len, k_descale,
                           v_descale, sm_scale, logit_cap or 0.0, page_size)
        CALLS["ran"] += 1
        return True

    return verify


def _patch(module) -> None:
    cls = getattr(module, "TritonAttnBackend", None)
    source = inspect.getsource(cls.forward_extend) if cls is not None else ""
    if "verify_splitkv_fwd" not in source or "use_verify_splitkv" not in source:
        logger.info("sglang-eagle3-ext: tree_attention not applied: this SGLang's Triton backend "
                    "has no verify_splitkv_fwd hook in forward_extend")
        return

    def make(original):
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self.use_verify_shared_kv = False  # upstream's grouped variant would take precedence
            self.use_verify_splitkv = True
            self.verify_splitkv_fwd = verify_fwd_for(self)

        return __init__

    wrap_method(cls, "__init__", make)


def apply() -> str:
    if not enabled():
        raise NotApplicable(f"off ({ENV}=on routes target-verify attention to our kernel)")
    patch_when_imported(BACKEND_MODULE, _patch)
    return "Triton backend target-verify -> kernels.tree_attention (on import)"
