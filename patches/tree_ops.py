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

Our replacements take SGLang's own parameter list (read from the function replaced: the spelling
`retrive_*` of older releases or `retrieve_*`), after checking that its names are in the order our
kernels expect, so positional and keyword calls from any EAGLE worker path land right.
"""

from __future__ import annotations

import importlib
import inspect

from sglang_eagle3_ext.settings import BY_NAME, settings

from .base import NotApplicable, Patch, Target

ENV = BY_NAME["tree_ops"].env
CHOICES = BY_NAME["tree_ops"].choices
EAGLE_UTILS = "sglang.srt.speculative.eagle_utils"
SPEC_TREE = "sglang.kernels.ops.speculative.spec_tree"
BUILD_PARAMS = ("parent_list", "top_scores_index", "seq_lens", "tree_mask", "positions",
                "retrieve_index", "retrieve_next_token", "retrieve_next_sibling", "topk", "spec_steps",
                "num_verify_tokens", "tree_mask_mode")
VERIFY_PARAMS = ("predicts", "accept_index", "accept_token_num", "candidates", "retrieve_index",
                 "retrieve_next_token", "retrieve_next_sibling", "target_predict")


def _find(name: str, *modules):
    for m in modules:
        if m is not None and hasattr(m, name):
            return getattr(m, name)
    return None


def _module(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _has_cuda_ops() -> bool:
    import torch

    return torch.cuda.is_available() and _find("sgl_build_tree_kernel_efficient", _module(SPEC_TREE),
                                                _module(EAGLE_UTILS)) is not None


def resolve_choice() -> str:
    choice = settings().tree_ops
    if choice != "auto":
        return choice
    if _has_cuda_ops():
        return "sgl-kernel"
    try:
        importlib.import_module("sglang_eagle3_ext.kernels").verify_tree_greedy
        return "triton"
    except (ImportError, AttributeError):
        return "sglang-triton"


def wanted():
    choice = resolve_choice()
    if choice != "sgl-kernel":
        return None
    if not _has_cuda_ops():  # asked for explicitly, and it is not there: say so, loudly
        from sglang_eagle3_ext.errors import Eagle3ConfigError

        raise Eagle3ConfigError(f"{ENV}=sgl-kernel but sgl-kernel's CUDA tree ops are not available "
                                f"here; use {ENV}=auto")
    return "sgl-kernel's CUDA tree ops are used (SGLang untouched)"


def _implementation(choice: str, eagle_utils, spec_tree):
    """(build, verify, sample) with our kernels' keyword names (retrieve_*, SGLang's for 'sglang-triton').

    SGLang has no Triton tree sampling, so "sglang-triton" samples with ours."""
    ours = importlib.import_module("sglang_eagle3_ext.kernels.tree_reference" if choice == "torch"
                                   else "sglang_eagle3_ext.kernels")
    if choice == "sglang-triton":
        build = _find("sgl_build_tree_kernel_triton", spec_tree, eagle_utils)
        verify = _find("verify_tree_greedy_triton", spec_tree, eagle_utils)
        if build is None or verify is None:
            raise NotApplicable("this SGLang has no Triton tree ops")

        def verify_op(**kw):
            return verify(**{k.replace("retrive_", "retrieve_"): v for k, v in kw.items()})

        return build, verify_op, ours.tree_speculative_sampling_target_only

    def verify_op(*, retrieve_index, retrieve_next_token, retrieve_next_sibling, **kw):
        return ours.verify_tree_greedy(retrive_index=retrieve_index, retrive_next_token=retrieve_next_token,
                                       retrive_next_sibling=retrieve_next_sibling, **kw)

    return ours.build_tree_kernel_efficient, verify_op, ours.tree_speculative_sampling_target_only


def _canonical(name: str) -> str:
    return name.replace("retrive_", "retrieve_")


def _mirroring(upstream, expected, call):
    """A function with upstream's signature that calls call(**{our name: value}) for the leading
    `expected` parameters; NotApplicable when upstream's names differ from `expected` (in order)."""
    sig = inspect.signature(upstream)
    names = list(sig.parameters)
    if [_canonical(n) for n in names[:len(expected)]] != list(expected):
        raise NotApplicable(f"{upstream.__module__}.{upstream.__name__}{names} does not lead with "
                            f"{list(expected)}")

    def mirrored(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        values = {_canonical(k): v for k, v in bound.arguments.items()}
        return call(**{k: values[k] for k in expected})

    mirrored.__signature__ = sig
    return mirrored


def plan(p) -> str:
    eagle_utils, spec_tree = p.load(EAGLE_UTILS), _module(SPEC_TREE)
    choice = resolve_choice()
    build_op, verify_op, sample_op = _implementation(choice, eagle_utils, spec_tree)

    def build(tree_mask_mode, **kw):
        build_op(*[kw[n] for n in BUILD_PARAMS[:-1]], int(tree_mask_mode))

    def verify(**kw):
        verify_op(**kw)
        return kw["predicts"], kw["accept_index"], kw["accept_token_num"]

    rebound = []
    for module_name in (EAGLE_UTILS, SPEC_TREE):
        for name, expected, call in (("verify_tree_greedy_func", VERIFY_PARAMS, verify),
                                     ("build_tree_kernel_efficient_func", BUILD_PARAMS, build)):
            upstream = p.get(f"{module_name}:{name}", None)
            if upstream is not None:
                p.replace(f"{module_name}:{name}", _mirroring(upstream, expected, call))
                rebound.append(f"{module_name.rsplit('.', 1)[-1]}.{name}")
    if not any(r.endswith("verify_tree_greedy_func") for r in rebound):
        raise NotApplicable("no verify_tree_greedy_func in eagle_utils or spec_tree")
    if "tree_speculative_sampling_target_only" in vars(eagle_utils):
        # Module global (None off-CUDA in >= 0.5.2x). Older SGLang imports it from sgl_kernel inside
        # its verify function, which no rebinding reaches: sampling is then not covered (detail).
        p.replace(f"{EAGLE_UTILS}:tree_speculative_sampling_target_only", sample_op)
        rebound.append("eagle_utils.tree_speculative_sampling_target_only")
    if not any(r.endswith("build_tree_kernel_efficient_func") for r in rebound):
        # Older SGLang: eagle_utils.build_tree_kernel_efficient calls this module global (absent off-CUDA).
        p.params(f"{EAGLE_UTILS}:build_tree_kernel_efficient", ("verified_id",))
        p.add(f"{EAGLE_UTILS}:sgl_build_tree_kernel_efficient", build_op)
        rebound.append("eagle_utils.sgl_build_tree_kernel_efficient")
    sampling = ("" if "eagle_utils.tree_speculative_sampling_target_only" in rebound else
                "; tree sampling (temperature > 0) NOT covered: this SGLang imports it from sgl_kernel "
                "inside its verify")
    return f"tree ops = {choice} ({', '.join(rebound)}){sampling}"


def _targets() -> list:
    out = []
    for module_name in (EAGLE_UTILS, SPEC_TREE):
        out.append(Target(f"{module_name}:verify_tree_greedy_func", "replace", optional=True))
        out.append(Target(f"{module_name}:build_tree_kernel_efficient_func", "replace", optional=True))
    return out + [Target(f"{EAGLE_UTILS}:tree_speculative_sampling_target_only", "replace", optional=True),
                  Target(f"{EAGLE_UTILS}:build_tree_kernel_efficient", "read", optional=True),
                  Target(f"{EAGLE_UTILS}:sgl_build_tree_kernel_efficient", "add", optional=True)]


PATCH = Patch("tree_ops", "EAGLE tree build/verify where sgl-kernel's ops are missing", plan,
              wanted=wanted, targets=_targets())
