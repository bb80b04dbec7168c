"""Tile configs for the FP8 fused MoE: tuned JSON files per (E, N, K, dtype, device), else a heuristic.

File format is SGLang's fused-MoE config format: a JSON object mapping a token count M to a
config; the entry closest to the actual M is used. One file for the gate/up GEMM and one with a
`_down` suffix for the down GEMM, named like SGLang's but with the hidden size K added:

    E=160,N=192,K=5120,device_name=NVIDIA_H100_80GB_HBM3,dtype=fp8_w8a8,block_shape=[64, 128].json

N is the per-rank intermediate size (w2.shape[2]); block_shape is the gate/up GEMM's (possibly
re-gridded) block. Keys: BLOCK_SIZE_M, BLOCK_SIZE_N, SPLIT_K, num_warps, num_stages (BLOCK_SIZE_K
is the scale group along K for block scales; settable for per-channel scales). Both GEMMs share
the token sort, so the down config takes the gate/up BLOCK_SIZE_M.

Looked up in $SGLANG_EAGLE3_EXT_FP8_MOE_CONFIG_DIR, then in fp8_moe_configs/ next to this file.
No tuned file ships yet (no GPU has been measured); without one the heuristic below is used.
`benchmarks/bench_fp8_moe.py --tune` writes files in this format.
"""

import contextlib
import functools
import json
import logging
import os
from pathlib import Path
from typing import Optional

import torch

logger = logging.getLogger("sglang_eagle3_ext")

ENV_DIR = "SGLANG_EAGLE3_EXT_FP8_MOE_CONFIG_DIR"
PACKAGED_DIR = Path(__file__).resolve().parent / "fp8_moe_configs"
KEYS = ("BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "SPLIT_K", "num_warps", "num_stages")


def _cuda_index(device):
    """CUDA device index for `device` (None: the current one when CUDA is there), else None."""
    if device is None:
        return torch.cuda.current_device() if torch.cuda.is_available() else None
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.lru_cache(maxsize=None)
def _cuda_props(index):
    props = torch.cuda.get_device_properties(index)
    return props.name.replace(" ", "_"), props.multi_processor_count


_TARGET = None  # (name, SMs) set by for_device(): choose configs for a GPU that is not here


@contextlib.contextmanager
def for_device(name: str, sms: int):
    """Within this block, configs are chosen as on GPU `name` with `sms` SMs, whatever the
    tensors' device: the ahead-of-time compile check (benchmarks/kernel_compile.py) runs the real
    launchers on CPU tensors this way to get exactly the tiles they launch on an H100 / H200."""
    global _TARGET
    old, _TARGET = _TARGET, (name.replace(" ", "_"), int(sms))
    try:
        yield
    finally:
        _TARGET = old


def device_name(device=None) -> str:
    if _TARGET:
        return _TARGET[0]
    index = _cuda_index(device)
    return "cpu" if index is None else _cuda_props(index)[0]


def config_file_name(E: int, N: int, K: int, device: str, block_shape=None, down: bool = False) -> str:
    block = f",block_shape={list(block_shape)}" if block_shape else ",per_channel_quant=True"
    return f"E={E},N={N},K={K},device_name={device},dtype=fp8_w8a8{block}{'_down' if down else ''}.json"


def config_dirs() -> list:
    env = os.environ.get(ENV_DIR)
    return ([Path(env)] if env else []) + [PACKAGED_DIR]


@functools.lru_cache(maxsize=None)
def load_configs(file_name: str, dirs: tuple) -> Optional[dict]:
    for d in dirs:
        path = Path(d) / file_name
        if path.exists():
            table = json.loads(path.read_text())
            logger.info("sglang-eagle3-ext: FP8 MoE configs from %s", path)
            return {int(m): check_config(cfg, str(path)) for m, cfg in table.items()}
    return None


def check_config(cfg: dict, where: str) -> dict:
    unknown = set(cfg) - set(KEYS)
    if unknown or "BLOCK_SIZE_M" not in cfg or "BLOCK_SIZE_N" not in cfg:
        raise ValueError(f"{where}: a config needs BLOCK_SIZE_M and BLOCK_SIZE_N and only keys from "
                         f"{KEYS}; got {sorted(cfg)}")
    return dict(cfg)


def save_configs(path, table: dict) -> None:
    """Write {M: config} in the format load_configs reads (and SGLang's tuner writes)."""
    Path(path).write_text(json.dumps({str(m): table[m] for m in sorted(table)}, indent=4) + "\n")


def num_sms(device=None) -> int:
    if _TARGET:
        return _TARGET[1]
    index = _cuda_index(device)
    return 4 if index is None else _cuda_props(index)[1]  # CPU (interpreter): few programs


def _pow2_at_least(x: float) -> int:
    p = 1
    while p < x:
        p *= 2
    return p


def heuristic_config(M: int, E: int, topk: int, N: int, K: int, block_k: Optional[int], sms: int,
                     down: bool = False, block_m: Optional[int] = None) -> dict:
    """A bandwidth-first guess (not measured): small BLOCK_M at decode/verify sizes, and split-K
    until the grid has about two programs per SM, so each expert's weights stream once from many SMs.

    N, K are this GEMM's output and reduction sizes (gate/up: 2I, H; down: H, I).
    """
    slots = M * topk
    per_expert = slots / min(E, max(slots, 1))
    if block_m is None:
        block_m = 16 if per_expert <= 16 else 32 if per_expert <= 48 else 64
    active = min(E, slots)
    m_blocks = active * -(-max(1, round(per_expert)) // block_m)
    block_n = 64 if M <= 256 else 128
    block_k = block_k or 128
    n_tiles = -(-N // block_n)
    k_blocks = -(-K // block_k)
    split = _pow2_at_least(2 * sms / max(1, m_blocks * n_tiles))
    split = max(1, min(split, k_blocks // 4 if k_blocks >= 8 else 1, 16))
    # 8 warps from BLOCK_M 32: at 4, ptxas spills the fp32 A tile of some of these (Triton 3.8,
    # benchmarks/results/compile_sm90a.md)
    return {"BLOCK_SIZE_M": block_m, "BLOCK_SIZE_N": block_n, "BLOCK_SIZE_K": block_k,
            "SPLIT_K": split, "num_warps": 8 if block_m >= 32 else 4, "num_stages": 3 if M <= 256 else 4}


def get_configs(M: int, E: int, topk: int, inter: int, hidden: int, w1_block, w2_block,
                device=None) -> tuple:
    """(gate/up config, down config) for M tokens: the tuned file's closest M, else the heuristic."""
    dev, sms, dirs = device_name(device), num_sms(device), tuple(map(str, config_dirs()))
    chosen = []
    for down, (n, k, block) in enumerate(((2 * inter, hidden, w1_block), (hidden, inter, w2_block))):
        table = load_configs(config_file_name(E, inter, hidden, dev, w1_block, bool(down)), dirs)
        if table:
            cfg = dict(table[min(table, key=lambda m: abs(m - M))])
        else:
            cfg = heuristic_config(M, E, topk, n, k, block[1] if block else None, sms, bool(down))
        if block:  # block scales: one K step per scale group
            cfg["BLOCK_SIZE_K"] = block[1]
        cfg.setdefault("BLOCK_SIZE_K", 128)
        cfg.setdefault("SPLIT_K", 1)
        chosen.append(cfg)
    chosen[1]["BLOCK_SIZE_M"] = chosen[0]["BLOCK_SIZE_M"]  # one token sort for both GEMMs
    return chosen[0], chosen[1]
