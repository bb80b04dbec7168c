"""What the GPU benchmarks share: device timing, copy bandwidth, versions, number formatting."""

import importlib.metadata
import platform
import statistics

import torch


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
    for key, dist in (("triton", "triton"), ("sglang", "sglang"), ("sgl_kernel", "sgl-kernel")):
        try:
            out[key] = importlib.metadata.version(dist)
        except Exception:
            out[key] = None
    return out


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"
