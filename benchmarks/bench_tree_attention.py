"""Target-verify attention: our Triton tree kernel vs SGLang's Triton extend kernel.

    python benchmarks/bench_tree_attention.py [--out r.json] [--shapes qwen25-7b ...]
        [--context 1024 4096] [--batch 1 8] [--draft 6 8] [--iters N]
    python benchmarks/bench_tree_attention.py --dry-run    # CPU, Triton interpreter, tiny shapes

Per case, same process, same inputs (SGLang's TARGET_VERIFY layout: each request's prefix KV at
scattered slots of a pool, its n draft tokens as k/v_extend, a random tree mask in FULL_MASK
layout, causal):
  1. both outputs vs each other (max abs difference, must be < 2e-2 in bf16);
  2. time: median over --iters samples of one call replayed from a CUDA graph, L2 flushed
     (256 MiB memset) before each sample;
  3. bandwidth: KV bytes the prefix holds (K and V, or the one latent row for MLA) + draft K/V +
     q + o, over time, as a fraction of the measured device-to-device copy bandwidth: a kernel
     that reads the prefix once is bounded by that fraction.
Shapes: Qwen2.5-7B (28 q / 4 kv heads, dim 128), GLM-4.7 at TP8 (96/8 heads -> 12 q / 1 kv per
rank, dim 128), GLM-4.7-Flash MLA in absorbed form (20 heads on one latent head, 512 + 64).
"""

import argparse
import importlib
import json
import os
import platform
import shlex
import sys
from pathlib import Path

import torch
from bench_common import copy_bandwidth, fmt, our_kernels, time_us, versions

SHAPES = {  # name: (q heads, kv heads, k dim, v dim)
    "qwen25-7b": (28, 4, 128, 128),
    "glm47-tp8": (12, 1, 128, 128),
    "glm47-flash-mla": (20, 1, 576, 512),
}
DRY_SHAPES = {"tiny-gqa": (4, 2, 16, 16), "tiny-mla": (4, 1, 576, 512)}
FLUSH_BYTES = 256 << 20


def kernels():
    """(ours, SGLang's extend_attention_fwd): the installed package, or this checkout's kernels/."""
    ours = importlib.import_module(f"{our_kernels().__name__}.tree_attention").tree_attention_fwd
    for mod in ("sglang.kernels.ops.attention.extend_attention",
                "sglang.srt.layers.attention.triton_ops.extend_attention"):
        try:
            return ours, importlib.import_module(mod).extend_attention_fwd
        except ImportError:
            continue
    return ours, None


def make_case(heads, kv_heads, dim, dv, context, batch, n, device, dtype, seed):
    """One verify batch: every request has `context` prefix tokens and an n-token random tree."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mla = kv_heads == 1 and dv < dim
    slots = batch * (context + n)
    perm = torch.randperm(slots, generator=gen)  # scattered pool slots, as after many requests
    k_buffer = torch.randn(slots, kv_heads, dim, generator=gen).to(device, dtype)
    v_buffer = k_buffer[..., :dv] if mla else torch.randn(slots, kv_heads, dv, generator=gen).to(device, dtype)
    prefix = perm[: batch * context].view(batch, context)
    draft = perm[batch * context:].view(batch, n)
    k_extend = k_buffer[draft.flatten().to(device)]
    v_extend = k_extend[..., :dv] if mla else v_buffer[draft.flatten().to(device)]
    masks = []
    for _ in range(batch):  # row i: the prefix, node i and its ancestors (parent[i] < i)
        anc = torch.eye(n, dtype=torch.bool)
        for i in range(1, n):
            anc[i] |= anc[int(torch.randint(0, i, (1,), generator=gen))]
        masks.append(torch.cat([torch.ones(n, context, dtype=torch.bool), anc], 1).flatten())
    lens = torch.full((batch,), context)
    return dict(
        q=torch.randn(batch * n, heads, dim, generator=gen).to(device, dtype),
        k_extend=k_extend.contiguous(), v_extend=v_extend.contiguous(),
        k_buffer=k_buffer, v_buffer=v_buffer,
        qo_indptr=torch.arange(0, (batch + 1) * n, n, dtype=torch.int32, device=device),
        kv_indptr=torch.cat([torch.zeros(1), lens.cumsum(0)]).to(device, torch.int32),
        kv_indices=prefix.flatten().to(device, torch.int64),
        custom_mask=torch.cat(masks).to(device),
        mask_indptr=torch.cat([torch.zeros(1), (n * (lens + n)).cumsum(0)]).to(device, torch.int32),
        n=n, mla=mla)


def bytes_moved(c, heads, kv_heads, dim, dv):
    el = c["q"].element_size()
    prefix_row = kv_heads * (dim if c["mla"] else dim + dv)  # MLA: V is part of the latent row
    draft_row = kv_heads * (dim + dv)
    tokens = c["q"].shape[0]
    return el * (c["kv_indices"].numel() * prefix_row + tokens * (draft_row + heads * (dim + dv)))


def call_with(fn, c, o):
    args = (c["q"], c["k_extend"], c["v_extend"], o, c["k_buffer"], c["v_buffer"], c["qo_indptr"],
            c["kv_indptr"], c["kv_indices"], c["custom_mask"], True, c["mask_indptr"], c["n"], 1.0, 1.0)
    return lambda: fn(*args)


def run_case(name, shape, context, batch, n, mods, args, flush, copy_bw):
    ours, theirs = mods
    heads, kv_heads, dim, dv = shape
    device, dtype = ("cpu", torch.float32) if args.dry_run else ("cuda", torch.bfloat16)
    c = make_case(heads, kv_heads, dim, dv, context, batch, n, device, dtype, seed=context + batch + n)
    o_ours = torch.empty(c["q"].shape[0], heads, dv, dtype=dtype, device=device)
    o_theirs = torch.empty_like(o_ours)
    run_ours, run_theirs = call_with(ours, c, o_ours), call_with(theirs, c, o_theirs) if theirs else None
    run_ours()
    row = dict(name=name, heads=heads, kv_heads=kv_heads, dim=dim, dv=dv, context=context,
               batch=batch, draft=n, MB=bytes_moved(c, *shape) / 1e6)
    if run_theirs:
        run_theirs()
        row["max_abs_diff"] = float((o_ours.float() - o_theirs.float()).abs().max())
        row["equal"] = row["max_abs_diff"] < (1e-4 if dtype == torch.float32 else 2e-2)
    if not args.dry_run:
        row["ours_us"] = time_us(run_ours, args.iters, flush)
        if run_theirs:
            row["sglang_us"] = time_us(run_theirs, args.iters, flush)
            row["speedup"] = row["sglang_us"] / row["ours_us"]
        for who in ("ours", "sglang"):
            if f"{who}_us" in row:
                row[f"{who}_copy_frac"] = row["MB"] * 1e6 / (row[f"{who}_us"] * 1e-6) / copy_bw
    return row


def table(rows):
    lines = ["| shape | ctx | B | n | MB | ours us | SGLang us | speedup | ours % copy BW "
             "| SGLang % copy BW | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = lambda k: None if r.get(k) is None else 100 * r[k]  # noqa: E731
        lines.append(f"| {r['name']} | {r['context']} | {r['batch']} | {r['draft']} | {fmt(r['MB'], 2)} "
                     f"| {fmt(r.get('ours_us'))} | {fmt(r.get('sglang_us'))} | {fmt(r.get('speedup'), 2)} "
                     f"| {fmt(pct('ours_copy_frac'), 0)} | {fmt(pct('sglang_copy_frac'), 0)} "
                     f"| {fmt(r.get('max_abs_diff'), 5)} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write results JSON here")
    p.add_argument("--shapes", nargs="+", help=f"default: all of {list(SHAPES)}")
    p.add_argument("--context", type=int, nargs="+", help="prefix lengths (default 1024 4096 16384 32768)")
    p.add_argument("--batch", type=int, nargs="+", help="requests per verify (default 1 8 32)")
    p.add_argument("--draft", type=int, nargs="+", default=[6, 8], help="draft tokens per request")
    p.add_argument("--iters", type=int, default=50, help="timed samples per case (median)")
    p.add_argument("--dry-run", action="store_true", help="CPU interpreter, tiny shapes, no timings")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    names = args.shapes or list(shapes)
    contexts = args.context or ([5, 40] if args.dry_run else [1024, 4096, 16384, 32768])
    batches = args.batch or ([1, 2] if args.dry_run else [1, 8, 32])
    drafts = [4] if args.dry_run and args.draft == [6, 8] else args.draft
    mods = kernels()
    flush = None if args.dry_run else torch.empty(FLUSH_BYTES // 4, dtype=torch.float32, device="cuda")
    copy_bw = None if args.dry_run else copy_bandwidth()
    rows = []
    for name in names:
        for context in contexts:
            for batch in batches:
                for n in drafts:
                    rows.append(run_case(name, shapes[name], context, batch, n, mods, args, flush, copy_bw))
                    print(json.dumps(rows[-1]), flush=True)
    result = dict(mode="dry-run" if args.dry_run else "gpu",
                  command=shlex.join([sys.executable] + sys.argv),
                  device=f"cpu ({platform.machine()})" if args.dry_run else torch.cuda.get_device_name(),
                  versions=versions(), sglang_kernel=None if mods[1] is None else
                  f"{mods[1].__module__}.extend_attention_fwd",
                  copy_bandwidth_GBps=None if copy_bw is None else copy_bw / 1e9,
                  all_equal=all(r.get("equal", True) for r in rows), cases=rows)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
