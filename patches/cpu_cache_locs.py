"""KV write slots for target-verify on a machine with no accelerator (EAGLE topk > 1).

SGLang's `assign_extend_cache_locs_func` has a branch per platform: Triton on CUDA/HIP/MUSA/XPU,
an NPU op, and sgl-kernel's CPU op under SGLANG_USE_CPU_ENGINE=1. With none of those (plain CPU,
no sgl-kernel CPU build) no branch runs and it returns None; verify then writes its KV at
`k_cache[None]` and the scheduler dies. A topk=1 chain never calls it (its write window is planned
while drafting), which is why only trees (topk > 1) hit this. We give that case the same slots in
plain torch: for each request, req_to_token[row, start:end], concatenated in batch order.
"""

from .base import Patch, Target

MODULE = "sglang.kernels.ops.speculative.cache_locs"
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


def wanted():
    import importlib

    try:
        cache_locs = importlib.import_module(MODULE)
    except ImportError:
        return None  # plan() reports the module as missing
    on = [f for f in _PLATFORM_FLAGS if getattr(cache_locs, f, False)]
    return f"SGLang has a kernel for this platform ({', '.join(on)})" if on else None


def plan(p) -> str:
    for flag in _PLATFORM_FLAGS:
        p.get(f"{MODULE}:{flag}")  # the op branches on exactly these: none set = no branch runs

    def make(original):
        def assign_extend_cache_locs_func(*args, **kwargs):
            out = original(*args, **kwargs)  # an out-of-tree platform may still answer
            return assign_extend_cache_locs_torch(*args, **kwargs) if out is None else out

        return assign_extend_cache_locs_func

    p.wrap(f"{MODULE}:assign_extend_cache_locs_func", make)
    return "assign_extend_cache_locs -> torch (no accelerator, no sgl-kernel CPU build)"


PATCH = Patch("cpu_cache_locs", "verify KV slots without an accelerator (EAGLE topk > 1)", plan,
              wanted=wanted, targets=[
                  Target(f"{MODULE}:assign_extend_cache_locs_func", params=_PARAMS, ordered=True),
                  *[Target(f"{MODULE}:{f}", "read") for f in _PLATFORM_FLAGS]])
