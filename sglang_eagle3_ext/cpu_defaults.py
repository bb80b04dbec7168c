"""SGLang arguments that run on a machine without a GPU (docs/cpu.md says what and why).

The Triton interpreter must be on before any Triton kernel module is imported, so callers set
TRITON_INTERPRET=1 at the top of their script (ensure_cpu_env does it for ours).
"""

import os

# A fixed KV pool (16k tokens: the tiny models' is a few MB) instead of a fraction of RAM: sizing
# the pool by mem_fraction_static=0.3 allocated and zeroed ~7 GB and cost ~4 s per engine start.
# One KV split: the interpreter runs every program of the decode grid (batch x heads x splits) in
# Python, and with SGLang's default of 8 splits a tiny model's decode step took 3x as long.
CPU_ENGINE_ARGS = dict(device="cpu", dtype="float32", attention_backend="triton",
                       sampling_backend="pytorch", grammar_backend="none",
                       disable_cuda_graph=True, max_total_tokens=16384,
                       triton_attention_num_kv_splits=1)

# Small chain: 3 draft steps, topk 1, 4 tokens verified per step.
EAGLE3_ARGS = dict(speculative_algorithm="EAGLE3", speculative_num_steps=3,
                   speculative_eagle_topk=1, speculative_num_draft_tokens=4)


def cpu_tp_env(tp_size: int, environ=None) -> dict:
    """Environment variables SGLang needs to serve --tp N on a CPU (over gloo), plugin or not.

    * SGLANG_CPU_OMP_THREADS_BIND, one '|'-separated core group per rank: without it
      sglang.srt.utils.numa_utils.init_threads_binding asserts tp_size <= NUMA nodes. (The binding
      itself only takes effect with sgl-kernel's CPU build; SGLang logs that it is disabled.)
    * SGLANG_NCCL_SO_PATH naming no library: with a CUDA build of torch on a machine without a GPU,
      GroupCoordinator builds a PyNcclCommunicator for the CPU group and fails ("Expected a cuda
      device, but got: cpu"); a library that does not load makes it disable itself, as it does
      with a CPU-only torch.
    Values already in `environ` (default os.environ) are kept."""
    environ = os.environ if environ is None else environ
    if tp_size <= 1:
        return {}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    per_rank = max(len(cores) // tp_size, 1)
    groups = [cores[(i * per_rank) % len(cores):][:per_rank] for i in range(tp_size)]
    bind = "|".join(_core_range(g) for g in groups)
    env = {"SGLANG_CPU_OMP_THREADS_BIND": bind, "SGLANG_NCCL_SO_PATH": os.devnull}
    return {k: environ.get(k, v) for k, v in env.items()}


def _core_range(cores: list) -> str:
    """[4, 5, 6, 7] -> "4-7" (SGLang's documented form), else a comma list."""
    if len(cores) > 1 and cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


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
