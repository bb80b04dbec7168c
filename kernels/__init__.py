"""Triton kernels of sglang_eagle3_ext (installed as ``sglang_eagle3_ext.kernels``).

Drop-ins for sgl-kernel's CUDA EAGLE tree ops, with the same signatures
(including sgl-kernel's ``retrive_*`` argument names) and in-place outputs:

* ``build_tree_kernel_efficient``  draft tree -> tree mask, positions and
  first-child / next-sibling retrieval links (FULL_MASK, QLEN_ONLY and
  QLEN_ONLY_BITPACKING mask modes);
* ``verify_tree_greedy``  greedy tree verification;
* ``tree_speculative_sampling_target_only``  tree verification for sampled
  requests from the target's probabilities.

One launch per op, one program per request, any topk. They run on any Triton
GPU backend and on CPU under ``TRITON_INTERPRET=1`` (fp32/int tensors there).
``tree_reference`` holds plain-torch references of the same semantics.

``tree_attention_fwd`` is the target-verify attention (split-KV prefix, masked draft
block, log-sum-exp merge; two launches) with the leading arguments of SGLang's Triton
``extend_attention_fwd``; ``tree_attention_reference`` is its plain-torch twin.

FP8 fused MoE (import the modules directly): ``fp8_moe.fused_experts_fp8`` (W8A8 e4m3, block or
per-channel scales), ``fp8_moe_reference`` (plain torch), ``fp8_regrid`` (exact TP shards of
128x128 block scales), ``fp8_moe_config`` (tuned-config files / heuristic).
"""

if __name__ == "kernels":  # imported top-level from a checkout: not us, see _pypi_handover
    from ._pypi_handover import hand_over

    hand_over()
else:
    from .tree_build import (
        FULL_MASK,
        QLEN_ONLY,
        QLEN_ONLY_BITPACKING,
        build_tree_kernel_efficient,
    )
    from .tree_attention import tree_attention_fwd
    from .tree_sampling import tree_speculative_sampling_target_only
    from .tree_verify import verify_tree_greedy

    __all__ = [
        "FULL_MASK",
        "QLEN_ONLY",
        "QLEN_ONLY_BITPACKING",
        "build_tree_kernel_efficient",
        "tree_attention_fwd",
        "tree_speculative_sampling_target_only",
        "verify_tree_greedy",
    ]
