"""KV write slots for target-verify on a machine with no accelerator (EAGLE topk > 1).

SGLang's `assign_extend_cache_locs_func` has a branch per platform: Triton on CUDA/HIP/MUSA/XPU,
an NPU op, and sgl-kernel's CPU op under SGLANG_USE_CPU_ENGINE=1. With none of those (plain CPU,
no sgl-kernel CPU build) no branch runs and it returns None; verify then writes its KV at
`k_cache[None]` and the scheduler dies. Which EAGLE paths call it depends on the release: from
0.5.16 only trees (topk > 1; a chain's write window is planned while drafting), in 0.5.13's V2
worker every verify, topk 1 included. We give it the same slots in plain torch: for each request,
req_to_token[row, start:end], concatenated in batch order.

Where the op lives moved between releases (the first module below that defines it is patched);
each branches on the platform flags its module has, a subset of _PLATFORM_FLAGS. Modules that
imported it by name (0.5.13's eagle_info_v2) are rebound by the patch runner.
"""

from .base import NotApplicable, Patch, Target

# newest first: sglang.kernels (0.5.16+), speculative.triton_ops (0.5.13), eagle_info_v2 (0.5.10)
MODULES = ("sglang.kernels.ops.speculative.cache_locs",
           "sglang.srt.speculative.triton_ops.cache_locs",
           "sglang.srt.speculative.eagle_info_v2")
OP = "assign_extend_cache_locs_func"
_PLATFORM_FLAGS = ("_is_cuda", "_is_hip", "_is_musa", "_is_xpu", "_is_npu", "_is_cpu")
_PARAMS = ("req_pool_indices", "req_to_token", "start_offset", "end_offset", "batch_size",
           "draft_token_num", "device")


def assign_extend_cache_locs_torch(req_pool_indices, req_to_token, start_offset, end_offset,
                                   batch_size, draft_token_num, device):
    """Same contract as SGLang's op: a flat int64 tensor of batch_size * draft_token_num slots,
    request i's slots req_to_token[req_pool_indices[i], start_offset[i]:end_offset[i]] in order."""
    import torch

    rows = req_to_token[req_pool_indices.long()]
    starts = start_offset.long().view(-1, 1)
    lens = (end_offset.long() - start_offset.long()).view(-1, 1)
    width = int(lens.max()) if lens.numel() else 0
    cols = torch.arange(width, device=rows.device).view(1, -1)
    taken = cols < lens
    idx = (starts + cols).clamp_max(rows.shape[1] - 1)
    slots = torch.gather(rows, 1, idx)[taken].to(torch.int64)
    out = torch.zeros(batch_size * draft_token_num, dtype=torch.int64, device=device)
    out[: slots.numel()] = slots
    return out


def _home():
    """(module name, module) of the first of MODULES that defines the op itself, or (None, why)."""
    import importlib

    why = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            why.append(f"{name}: {type(e).__name__}: {e}")
            continue
        op = getattr(module, OP, None)
        if op is not None and getattr(op, "__module__", None) == name:  # not a by-name copy
            return name, module
        why.append(f"{name}: no {OP} of its own")
    return None, "; ".join(why)


def _flags(module) -> list:
    """The platform flags the op's module has; without _is_cuda we do not know how it branches."""
    have = [f for f in _PLATFORM_FLAGS if hasattr(module, f)]
    return have if "_is_cuda" in have else []


def wanted():
    name, module = _home()
    if name is None:
        return None  # plan() reports the op as missing
    on = [f for f in _flags(module) if getattr(module, f)]
    return f"SGLang has a kernel for this platform ({', '.join(on)})" if on else None


def plan(p) -> str:
    name, module = _home()
    if name is None:
        raise NotApplicable(f"no {OP} in this SGLang ({module})")
    flags = _flags(module)
    if not flags:
        raise NotApplicable(f"{name} has no _is_cuda flag: its {OP} does not branch as expected")
    for flag in flags:
        p.get(f"{name}:{flag}")  # the op branches on exactly these: none set = no branch runs

    def make(original):
        def assign_extend_cache_locs_func(*args, **kwargs):
            out = original(*args, **kwargs)  # an out-of-tree platform may still answer
            return assign_extend_cache_locs_torch(*args, **kwargs) if out is None else out

        return assign_extend_cache_locs_func

    p.wrap(f"{name}:{OP}", make)
    return f"{name}.{OP} -> torch when no platform branch answers ({'/'.join(flags)} all off)"


PATCH = Patch("cpu_cache_locs", "verify KV slots without an accelerator (EAGLE topk > 1)", plan, wanted=wanted, targets=[
                  t for name in MODULES for t in (
                      Target(f"{name}:{OP}", params=_PARAMS, ordered=True, optional=True),
                      *[Target(f"{name}:{f}", "read", optional=True) for f in _PLATFORM_FLAGS])])
