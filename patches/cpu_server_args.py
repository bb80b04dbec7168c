"""Server arguments that SGLang itself picks for a CPU only under SGLANG_USE_CPU_ENGINE=1.

SGLang's CPU rules test `is_cpu()`, which means its sgl-kernel CPU engine (SGLANG_USE_CPU_ENGINE=1),
not `--device cpu`. Without that build some releases then turn on what cannot run on a CPU:

* cpu_piecewise_graph: releases with a `disable_piecewise_cuda_graph` switch (0.5.10-0.5.13)
  capture piecewise CUDA graphs for every model: `torch.cpu.graph_pool_handle` does not exist
  (AttributeError at engine start, speculative or not). With `--device cpu` we set the switch
  after SGLang has decided, as its own rule does for is_cpu(). Releases without the switch (its
  CUDA-graph config replaced it) have nothing to turn off.
* cpu_spec_overlap: speculative decoding under the overlap scheduler calls
  `tensor.record_stream(torch.cpu.current_stream())` ("unknown parameter type") on the first
  decode. Newer SGLang turns the overlap scheduler off for speculative decoding on `--device cpu`
  itself (`speculative_hook._disable_overlap_schedule_for_cpu`); where it does not (0.5.13), we
  do the same after its speculative-argument handling.

Both are wanted only without CUDA, and change nothing unless the server runs with `--device cpu`.
"""

import logging

from .base import Patch, Target

logger = logging.getLogger("sglang_eagle3_ext")

SERVER_ARGS = "sglang.srt.server_args:ServerArgs"
SPEC_HOOK = "sglang.srt.arg_groups.speculative_hook"


def _no_cuda():
    import torch

    return "CUDA present (SGLang's GPU path)" if torch.cuda.is_available() else None


def _has_field(cls, name: str) -> bool:
    return name in getattr(cls, "__dataclass_fields__", {})


# ------------------------------------------------------------------ piecewise CUDA graphs


def piecewise_wanted():
    import importlib

    if _no_cuda():
        return _no_cuda()
    cls = importlib.import_module("sglang.srt.server_args").ServerArgs
    if not _has_field(cls, "disable_piecewise_cuda_graph"):
        return "this SGLang has no disable_piecewise_cuda_graph switch (nothing to turn off)"
    return None


def _piecewise_off(original):
    def handle_piecewise_cuda_graph(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if self.device == "cpu" and not self.disable_piecewise_cuda_graph:
            self.disable_piecewise_cuda_graph = True
            logger.info("sglang-eagle3-ext: piecewise CUDA graph off (--device cpu)")
        return out

    return handle_piecewise_cuda_graph


def piecewise_plan(p) -> str:
    p.wrap(f"{SERVER_ARGS}._handle_piecewise_cuda_graph", _piecewise_off)
    return "ServerArgs._handle_piecewise_cuda_graph: --device cpu -> disable_piecewise_cuda_graph"


# ------------------------------------------------------------------ overlap scheduler


def overlap_wanted():
    from .base import module_exists

    if _no_cuda():
        return _no_cuda()
    if module_exists(SPEC_HOOK):
        import importlib

        if hasattr(importlib.import_module(SPEC_HOOK), "_disable_overlap_schedule_for_cpu"):
            return "SGLang turns the overlap scheduler off for speculative decoding on CPU itself"
    return None


def _overlap_off(original):
    def handle_speculative_decoding(server_args, *args, **kwargs):
        out = original(server_args, *args, **kwargs)
        if (server_args.device == "cpu" and server_args.speculative_algorithm is not None
                and not server_args.disable_overlap_schedule):
            server_args.disable_overlap_schedule = True
            logger.info("sglang-eagle3-ext: overlap scheduler off for speculative decoding (--device cpu)")
        return out

    return handle_speculative_decoding


def overlap_plan(p) -> str:
    p.get(f"{SERVER_ARGS}.disable_overlap_schedule")
    p.wrap(f"{SPEC_HOOK}:handle_speculative_decoding", _overlap_off)
    return "speculative_hook.handle_speculative_decoding: --device cpu -> disable_overlap_schedule"


PATCHES = [
    Patch("cpu_piecewise_graph", "no piecewise CUDA graphs with --device cpu (SGLang: only for its CPU engine)",
          piecewise_plan, wanted=piecewise_wanted,
          targets=[Target(f"{SERVER_ARGS}._handle_piecewise_cuda_graph"),
                   Target(f"{SERVER_ARGS}.disable_piecewise_cuda_graph", "read")]),
    Patch("cpu_spec_overlap", "no overlap scheduler for speculative decoding with --device cpu",
          overlap_plan, wanted=overlap_wanted,
          targets=[Target(f"{SPEC_HOOK}:handle_speculative_decoding", params=("server_args",), ordered=True),
                   Target(f"{SERVER_ARGS}.disable_overlap_schedule", "read")]),
]
