"""The published protocol against one server: per batch size B, warm-up requests then measured
requests, each phase with at most B requests in flight (B client threads).

throughput = output tokens of the measured requests / wall time from the first send to the last
finish; acceptance = the server's counter deltas over exactly that window (metrics.py).
"""

from __future__ import annotations

import math
import queue
import threading
import urllib.request
import time
from dataclasses import dataclass

from . import metrics
from .client import chat_stream, get_json
from .prompts import pick

# batch size -> (warm-up, measured) requests, as the published drafts measured
PROTOCOL = {1: (5, 20), 32: (15, 60)}


def default_counts(batch_size: int) -> tuple[int, int]:
    return PROTOCOL.get(batch_size, PROTOCOL[32] if batch_size > 1 else PROTOCOL[1])


@dataclass
class Options:
    max_tokens: int = 512
    temperature: float = 0.0
    ignore_eos: bool = False
    model: str = "default"
    timeout: float = 600
    flush_cache: bool = True


def server_info(url: str) -> dict:
    """The server's configuration (/server_info, or /get_server_info on older SGLang)."""
    info = get_json(url.rstrip("/") + "/server_info") or get_json(url.rstrip("/") + "/get_server_info") or {}
    keep = ("model_path", "version", "tp_size", "dtype", "attention_backend", "mem_fraction_static",
            "speculative_algorithm", "speculative_draft_model_path", "speculative_num_steps",
            "speculative_eagle_topk", "speculative_num_draft_tokens", "enable_metrics")
    return {k: info[k] for k in keep if k in info}


def flush_cache(url: str) -> bool:
    """Empty the server's prefix cache (SGLang's /flush_cache); False where it cannot."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/flush_cache", timeout=30) as r:
            return r.status == 200
    except OSError:
        return False


def run_requests(url: str, items: list, concurrency: int, opts: Options, on_done=None) -> tuple[list, float]:
    """Send items with at most `concurrency` in flight; returns (results in item order, wall s)."""
    todo = queue.Queue()
    for i, item in enumerate(items):
        todo.put((i, item))
    results, errors = [None] * len(items), []

    def worker():
        while not errors:
            try:
                i, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = chat_stream(url, item["messages"], opts.max_tokens, opts.temperature,
                                         opts.ignore_eos, opts.model, opts.timeout)
            except Exception as e:  # stop the phase; re-raised below with the request's index
                errors.append((i, e))
                return
            if on_done:
                on_done()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(concurrency, len(items)))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        i, e = errors[0]
        raise RuntimeError(f"request {i} to {url} failed: {e}") from e
    return results, wall


def percentiles(values: list) -> dict | None:
    """p50 / p90 / p99 / mean in milliseconds (nearest-rank)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None

    def rank(p):
        return values[max(0, math.ceil(p / 100 * len(values)) - 1)]

    return {"p50": rank(50) * 1e3, "p90": rank(90) * 1e3, "p99": rank(99) * 1e3,
            "mean": sum(values) / len(values) * 1e3}


def run_batch_size(url: str, batch_size: int, warmup: list, measured: list, opts: Options,
                   num_draft_tokens: int | None, progress=None) -> dict:
    """One batch size: warm-up, then the measured window with its counter deltas."""
    if opts.flush_cache:  # the measured prompts must not hit a prefix cache of an earlier phase
        flush_cache(url)
    m0 = metrics.scrape(url)
    warm, _ = run_requests(url, warmup, batch_size, opts, progress)
    warm_tokens = sum(r["completion_tokens"] for r in warm)
    m1 = metrics.scrape_settled(url, m0, warm_tokens)
    done, wall = run_requests(url, measured, batch_size, opts, progress)
    tokens = sum(r["completion_tokens"] for r in done)
    m2 = metrics.scrape_settled(url, m1, tokens)
    window, warm_window = metrics.delta(m2, m1), metrics.delta(m1, m0)
    acc = metrics.acceptance(window, num_draft_tokens)
    tpot = [(r["latency_s"] - r["ttft_s"]) / (r["completion_tokens"] - 1)
            for r in done if r["ttft_s"] is not None and r["completion_tokens"] > 1]
    return {
        "batch_size": batch_size,
        "warmup_requests": len(warm), "measured_requests": len(done),
        "output_tokens": tokens, "wall_s": wall,
        "throughput_tok_s": tokens / wall if wall > 0 else None,
        "ttft_ms": percentiles([r["ttft_s"] for r in done]),
        "itl_ms": percentiles([g for r in done for g in r["chunk_gaps_s"]]),
        "tpot_ms": percentiles(tpot),
        "acceptance": acc,
        "server_generation_tokens": None if window is None else int(window.get("generated", 0)),
        "warmup": {"output_tokens": warm_tokens,
                   "server_counters": None if warm_window is None else
                   {k: int(v) for k, v in warm_window.items()}},
        "requests": [{"completion_tokens": r["completion_tokens"], "prompt_tokens": r["prompt_tokens"],
                      "ttft_ms": None if r["ttft_s"] is None else r["ttft_s"] * 1e3,
                      "latency_ms": r["latency_s"] * 1e3} for r in done],
    }


def run_server(url: str, label: str, prompts: list, batch_sizes: list, counts: dict, opts: Options,
               simulate_accept_length: float | None = None, progress_factory=None) -> dict:
    """Every batch size against one server; the same prompts in the same order for every server."""
    info = server_info(url)
    num_draft = info.get("speculative_num_draft_tokens") if info.get("speculative_algorithm") else None
    phases = []
    for b in batch_sizes:
        n_warm, n_meas = counts[b]
        bar = progress_factory(n_warm + n_meas, f"{label} B={b}") if progress_factory else None
        phases.append(run_batch_size(url, b, pick(prompts, 0, n_warm), pick(prompts, n_warm, n_meas),
                                     opts, num_draft, bar.update if bar else None))
        if bar:
            bar.close()
    return {"label": label, "url": url, "server": info, "simulated_accept_length": simulate_accept_length,
            "phases": phases}
