"""What the benchmarks share: our kernels from an install or this checkout, device timing, copy
bandwidth, versions, number formatting."""

import importlib
import importlib.metadata
import importlib.util
import platform
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def our_kernels():
    """sglang_eagle3_ext.kernels; from this checkout if the installed package
    lacks it (a source tree on sys.path shadows an install: kernels/ maps to
    sglang_eagle3_ext.kernels only through setup.py's package_dir)."""
    name = "sglang_eagle3_ext.kernels"
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "kernels" / "__init__.py", submodule_search_locations=[str(ROOT / "kernels")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def copy_bandwidth():
    """(read + write) bytes / s of a 1 GiB device-to-device copy, median of 20."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for i in range(25):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        dst.copy_(src)
        e.record()
        e.synchronize()
        if i >= 5:
            times.append(s.elapsed_time(e) / 1e3)
    del src, dst
    return 2 * (1 << 30) / statistics.median(times)


def time_us(call, iters, flush):
    """Median device microseconds of one call replayed from a CUDA graph, L2 flushed before each."""
    for _ in range(3):  # compile / autotune outside the graph
        call()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        call()
    samples = []
    for i in range(iters + 5):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        g.replay()
        e.record()
        e.synchronize()
        if i >= 5:
            samples.append(s.elapsed_time(e) * 1e3)
    return statistics.median(samples)


def versions():
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for key, dist, module in (("triton", "triton", "triton"), ("sglang", "sglang", "sglang"),
                              ("sgl_kernel", "sgl-kernel", "sgl_kernel")):
        try:
            out[key] = importlib.metadata.version(dist)
        except Exception:
            try:  # sgl-kernel unpacked without dist-info (the GPU kit)
                out[key] = getattr(importlib.import_module(module), "__version__", "unknown")
            except Exception:
                out[key] = None
    return out


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"
