"""SGLang arguments that run on a machine without a GPU (docs/cpu.md says what and why).

The Triton interpreter must be on before any Triton kernel module is imported, so callers set
TRITON_INTERPRET=1 at the top of their script (ensure_cpu_env does it for ours).
"""

import os

# A fixed KV pool (16k tokens: the tiny models' is a few MB) instead of a fraction of RAM: sizing
# the pool by mem_fraction_static=0.3 allocated and zeroed ~7 GB and cost ~4 s per engine start.
CPU_ENGINE_ARGS = dict(device="cpu", dtype="float32", attention_backend="triton",
                       sampling_backend="pytorch", grammar_backend="none",
                       disable_cuda_graph=True, max_total_tokens=16384)

# Small chain: 3 draft steps, topk 1, 4 tokens verified per step.
EAGLE3_ARGS = dict(speculative_algorithm="EAGLE3", speculative_num_steps=3,
                   speculative_eagle_topk=1, speculative_num_draft_tokens=4)


def ensure_cpu_env() -> None:
    """Interpret Triton on the CPU when there is no GPU (before Triton kernels are imported)."""
    import importlib.util

    if "TRITON_INTERPRET" in os.environ:
        return
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = importlib.util.find_spec("torch") is None
    if not has_gpu:
        os.environ["TRITON_INTERPRET"] = "1"


def as_cli(args: dict) -> list:
    """Engine kwargs -> launch_server flags."""
    out = []
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value not in (False, None):
            out += [flag, str(value)]
    return out
