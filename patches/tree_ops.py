"""Route EAGLE's tree build / verify / sampling to a working implementation where sgl-kernel's is missing.

SGLang calls two ops per speculative step: build the draft tree (positions, mask, retrieve links)
and verify it against the target (greedy argmax, or tree sampling when temperature > 0). On CUDA they are sgl-kernel ops; on a machine
without them (CPU, other GPUs) SGLang has no path for them: 0.5.23 rejects the platform
(`reject_out_of_tree_path`), 0.5.16 hits a NameError on `sgl_build_tree_kernel_efficient`.
Both versions carry Triton versions of the two ops (used for XPU); this project carries its own
(`sglang_eagle3_ext.kernels`, topk > 1 and sampling included). We rebind the names SGLang's EAGLE
code calls.

Choice: SGLANG_EAGLE3_EXT_TREE_OPS = auto | sgl-kernel | triton | sglang-triton | torch.
`auto` keeps sgl-kernel where CUDA has it, else this project's Triton kernels when importable,
else SGLang's own Triton versions.
"""

from __future__ import annotations

import importlib
import os

from .base import NotApplicable, import_or_skip

ENV = "SGLANG_EAGLE3_EXT_TREE_OPS"
CHOICES = ("auto", "sgl-kernel", "triton", "sglang-triton", "torch")


def _find(name: str, *modules):
    for m in modules:
        if m is not None and hasattr(m, name):
            return getattr(m, name)
    return None


def _sglang_modules():
    eagle_utils = import_or_skip("sglang.srt.speculative.eagle_utils")
    try:
        spec_tree = importlib.import_module("sglang.kernels.ops.speculative.spec_tree")
    except ImportError:
        spec_tree = None
    return eagle_utils, spec_tree


def _has_cuda_ops(eagle_utils, spec_tree) -> bool:
    import torch

    return torch.cuda.is_available() and _find("sgl_build_tree_kernel_efficient", spec_tree, eagle_utils) is not None


def _implementation(choice: str, eagle_utils, spec_tree):
    """(build, verify, sample) callables with sgl-kernel's op signatures (retrive_* kwargs).

    SGLang has no Triton tree sampling, so "sglang-triton" samples with ours."""
    ours = importlib.import_module("sglang_eagle3_ext.kernels.tree_reference" if choice == "torch"
                                   else "sglang_eagle3_ext.kernels")
    if choice == "sglang-triton":
        build = _find("sgl_build_tree_kernel_triton", spec_tree, eagle_utils)
        verify = _find("verify_tree_greedy_triton", spec_tree, eagle_utils)
        if build is None or verify is None:
            raise NotApplicable("this SGLang has no Triton tree ops")

        def verify_op(*, retrive_index, retrive_next_token, retrive_next_sibling, **kw):
            return verify(retrieve_index=retrive_index, retrieve_next_token=retrive_next_token,
                          retrieve_next_sibling=retrive_next_sibling, **kw)

        return build, verify_op, ours.tree_speculative_sampling_target_only
    return (ours.build_tree_kernel_efficient, ours.verify_tree_greedy,
            ours.tree_speculative_sampling_target_only)


def resolve_choice() -> str:
    choice = os.environ.get(ENV, "auto").strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"{ENV}={choice!r} is not one of {', '.join(CHOICES)}")
    if choice != "auto":
        return choice
    eagle_utils, spec_tree = _sglang_modules()
    if _has_cuda_ops(eagle_utils, spec_tree):
        return "sgl-kernel"
    try:
        importlib.import_module("sglang_eagle3_ext.kernels").verify_tree_greedy
        return "triton"
    except (ImportError, AttributeError):
        return "sglang-triton"


def apply() -> str:
    eagle_utils, spec_tree = _sglang_modules()
    choice = resolve_choice()
    if choice == "sgl-kernel":
        if not _has_cuda_ops(eagle_utils, spec_tree):
            raise RuntimeError(f"{ENV}=sgl-kernel but sgl-kernel's CUDA tree ops are not available here")
        raise NotApplicable("sgl-kernel's CUDA tree ops are used (SGLang untouched)")
    build_op, verify_op, sample_op = _implementation(choice, eagle_utils, spec_tree)

    def build_tree_kernel_efficient_func(parent_list, top_scores_index, seq_lens, tree_mask,
                                         positions, retrieve_index, retrieve_next_token,
                                         retrieve_next_sibling, topk, spec_steps,
                                         num_verify_tokens, tree_mask_mode):
        build_op(parent_list, top_scores_index, seq_lens, tree_mask, positions, retrieve_index,
                 retrieve_next_token, retrieve_next_sibling, topk, spec_steps, num_verify_tokens,
                 int(tree_mask_mode))

    def verify_tree_greedy_func(predicts, accept_index, accept_token_num, candidates,
                                retrieve_index, retrieve_next_token, retrieve_next_sibling,
                                target_predict, topk=-1):
        verify_op(predicts=predicts, accept_index=accept_index, accept_token_num=accept_token_num,
                  candidates=candidates, retrive_index=retrieve_index,
                  retrive_next_token=retrieve_next_token, retrive_next_sibling=retrieve_next_sibling,
                  target_predict=target_predict)
        return predicts, accept_index, accept_token_num

    if not hasattr(eagle_utils, "verify_tree_greedy_func"):
        raise NotApplicable("sglang.srt.speculative.eagle_utils has no verify_tree_greedy_func")
    rebound = []
    for mod in (eagle_utils, spec_tree):
        if mod is None:
            continue
        if hasattr(mod, "verify_tree_greedy_func"):
            mod.verify_tree_greedy_func = verify_tree_greedy_func
            rebound.append(f"{mod.__name__}.verify_tree_greedy_func")
        if hasattr(mod, "build_tree_kernel_efficient_func"):  # >= 0.5.2x: one dispatch function
            mod.build_tree_kernel_efficient_func = build_tree_kernel_efficient_func
            rebound.append(f"{mod.__name__}.build_tree_kernel_efficient_func")
    if "tree_speculative_sampling_target_only" in vars(eagle_utils):
        # Module global (None off-CUDA in >= 0.5.2x); older SGLang imports it from sgl_kernel
        # inside the verify function, which a rebinding cannot reach.
        eagle_utils.tree_speculative_sampling_target_only = sample_op
        rebound.append("eagle_utils.tree_speculative_sampling_target_only")
    if not hasattr(eagle_utils, "build_tree_kernel_efficient_func"):
        # Older SGLang: eagle_utils.build_tree_kernel_efficient calls this module global (absent off-CUDA).
        eagle_utils.sgl_build_tree_kernel_efficient = build_op
        rebound.append("eagle_utils.sgl_build_tree_kernel_efficient")
    return f"tree ops = {choice} ({', '.join(rebound)})"
