"""Target-verify attention on our Triton tree-attention kernel (kernels/tree_attention.py).

SGLang's Triton backend already has the hook: in `forward_extend`, on TARGET_VERIFY, it calls
`self.verify_splitkv_fwd(...)` when `self.use_verify_splitkv` is set, and falls back to its
serial-prefix extend kernel when that call returns False. Upstream sets it only for its own
split-KV kernel on AMD gfx95 with topk == 1. We set it, per backend instance, to ours (any topk,
GQA and MLA); prefill, decode and draft passes keep SGLang's kernels. Cases ours does not cover
(attention sinks, sliding window, xai temperature) return False and run SGLang's kernel.

Off by default until a GPU benchmark shows it wins: SGLANG_EAGLE3_EXT_TREE_ATTENTION=on.
"""

from sglang_eagle3_ext.settings import BY_NAME, settings
from sglang_eagle3_ext.state import STATE

from .base import Patch, Target

ENV = BY_NAME["tree_attention"].env
BACKEND_MODULE = "sglang.srt.layers.attention.triton_backend"
BACKEND = f"{BACKEND_MODULE}:TritonAttnBackend"
# Upstream's split-KV verify kernel: the backend calls whatever sits in its verify_splitkv_fwd slot
# with this argument list (positionally), so ours must take the same leading names in this order.
UPSTREAM_VERIFY = "sglang.kernels.ops.attention.verify_splitkv:verify_splitkv_fwd"
VERIFY_PARAMS = ("q_extend", "k_extend", "v_extend", "o_extend", "k_buffer", "v_buffer", "qo_indptr",
                 "kv_indptr", "kv_indices", "custom_mask", "is_causal", "mask_indptr", "max_len_extend",
                 "k_scale", "v_scale", "sm_scale")
CALLS = STATE.tree_attention_calls  # per process, reported in /get_server_info


def wanted():
    return None if settings().tree_attention else f"off ({ENV}=on routes target-verify attention to our kernel)"


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


def _make_init(original):
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not hasattr(self, "use_verify_splitkv"):  # the slot is set up in __init__ upstream
            return
        self.use_verify_shared_kv = False  # upstream's grouped variant would take precedence
        self.use_verify_splitkv = True
        self.verify_splitkv_fwd = verify_fwd_for(self)

    return __init__


def plan(p) -> str:
    p.params(UPSTREAM_VERIFY, VERIFY_PARAMS, ordered=True)
    p.wrap(f"{BACKEND}.__init__", _make_init)
    return "Triton backend target-verify -> kernels.tree_attention"


PATCH = Patch("tree_attention", "target-verify attention on our Triton tree kernel (opt-in)", plan,
              wanted=wanted, on_import=BACKEND_MODULE,
              targets=[Target(f"{BACKEND}.__init__"),
                       Target(UPSTREAM_VERIFY, "read", params=VERIFY_PARAMS, ordered=True)])
