"""Sharing the target's embedding with the EAGLE draft works without CUDA.

Every EAGLE-3 worker hands the target's embedding (and lm_head) to the draft through
`LlamaForCausalLM.set_embed` / `set_embed_and_head`. Older SGLang (0.5.10, 0.5.13) ends both with
an unconditional `torch.cuda.empty_cache(); torch.cuda.synchronize()`; without CUDA the second
raises ("Found no NVIDIA driver" / "Torch not compiled with CUDA enabled") after the weights were
already swapped, and the draft worker dies. Newer SGLang goes through its platform layer instead.

Without CUDA there is no device work to wait for, so while these two methods run (on the
scheduler's thread) `torch.cuda.synchronize` is a no-op; everything else is SGLang's own code.
Wanted only where torch has no CUDA device.
"""

import contextlib

from .base import Patch, Target

MODULE = "sglang.srt.models.llama"
METHODS = ("set_embed", "set_embed_and_head")


def wanted():
    import torch

    return "CUDA present (torch.cuda.synchronize works)" if torch.cuda.is_available() else None


@contextlib.contextmanager
def _no_cuda_sync():
    import torch

    original = torch.cuda.synchronize
    torch.cuda.synchronize = lambda device=None: None
    try:
        yield
    finally:
        torch.cuda.synchronize = original


def _without_cuda_sync(original):
    def method(self, *args, **kwargs):
        with _no_cuda_sync():
            return original(self, *args, **kwargs)

    return method


def plan(p) -> str:
    done = []
    for name in METHODS:
        if p.has(f"{MODULE}:LlamaForCausalLM.{name}"):
            p.wrap(f"{MODULE}:LlamaForCausalLM.{name}", _without_cuda_sync)
            done.append(name)
    if "set_embed" not in done:
        from .base import NotApplicable

        raise NotApplicable("LlamaForCausalLM has no set_embed")
    return f"LlamaForCausalLM.{' / '.join(done)}: torch.cuda.synchronize is a no-op while they run (no CUDA)"


PATCH = Patch("cpu_draft_embed", "draft shares the target's embedding without CUDA (no torch.cuda.synchronize)",
              plan, wanted=wanted, on_import=MODULE,
              targets=[Target(f"{MODULE}:LlamaForCausalLM.set_embed", params=("embed",), ordered=True),
                       Target(f"{MODULE}:LlamaForCausalLM.set_embed_and_head", params=("embed", "head"),
                              ordered=True, optional=True)])
