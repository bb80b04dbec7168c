"""Our Triton EAGLE tree ops vs SGLang's CUDA ops: equality first, then time.

    python benchmarks/bench_tree_ops.py [--out results.json] [--batch 1 8 32 64] [--topk 1 4] [--iters N]

For every (op, batch, topk, tree shape) on CUDA:
  1. run ours and SGLang's CUDA op on the same inputs and compare: bit-exact for
     build_tree_kernel_efficient and verify_tree_greedy; for
     tree_speculative_sampling_target_only the accept decisions, predicts and
     draft_probs bit-exact, the final (bonus) token equal or a rounding tie (the
     residual sums are reduced in a different order);
     both are also compared against the plain-torch reference;
  2. time both: eager (back-to-back calls, CUDA events; per call including the
     Python/launch overhead, which dominates these tiny ops) and CUDA-graph
     replay (device time only); median of --iters samples of CALLS calls each;
  3. compare the outputs again after timing (repeated and replayed calls must
     leave the same results).
Prints a Markdown table, writes JSON; exits 1 if any case differs.

Without CUDA (or with --dry-run) every case runs once on CPU through the Triton
interpreter at tiny sizes and is compared with the torch reference.

SGLang's CUDA ops are feature-detected: ``sglang.kernels.ops.speculative.tree``
/ ``.sampling`` (JIT CUDA, SGLang 0.5.23) or ``sgl_kernel`` (SGLang 0.5.16 with
sgl-kernel 0.4.5). If none imports, ours are reported alone.
"""

import argparse
import importlib
import json
import os
import platform
import shlex
import statistics
import sys
import zlib
from pathlib import Path

import torch
from bench_common import fmt, our_kernels, versions

from sglang_eagle3_ext.kernels.tree_inputs import draft_steps, draft_tree, tree_children

OPS = ("build_tree_kernel_efficient", "verify_tree_greedy", "tree_speculative_sampling_target_only")
SHORT = {"build_tree_kernel_efficient": "build", "verify_tree_greedy": "verify",
         "tree_speculative_sampling_target_only": "sample"}
FULL_MASK = 0  # the mask mode SGLang uses for GPU attention backends
CALLS = 10  # calls per timed sample (amortizes event / graph-launch overhead)
WARMUP = 5  # samples before timing
DRAFT_VOCAB = 4096  # draft token ids come from here (any id < vocab works)
QWEN_VOCAB = 152064


# ------------------------------------------------------------- our kernels
# our_kernels() (bench_common.py): the installed package, or this checkout's kernels/.


def reference():
    our_kernels()
    return importlib.import_module("sglang_eagle3_ext.kernels.tree_reference")


# ---------------------------------------------------------- SGLang's ops

UPSTREAM_SOURCES = (
    # SGLang >= 0.5.23: JIT-compiled CUDA ops inside SGLang
    ("sglang.kernels.ops.speculative.tree", ("build_tree_kernel_efficient", "verify_tree_greedy")),
    ("sglang.kernels.ops.speculative.sampling", ("tree_speculative_sampling_target_only",)),
    # older SGLang (0.5.16): AOT ops in sgl-kernel
    ("sgl_kernel", OPS),
)


def upstream_ops():
    """{op name: (callable, module)} for each CUDA op found, and why others were not."""
    found, why = {}, {}
    for module, names in UPSTREAM_SOURCES:
        if all(n in found for n in names):
            continue
        try:
            mod = importlib.import_module(module)
        except Exception as e:  # missing, or a broken native library
            why[module] = f"{type(e).__name__}: {e}"[:200]
            continue
        for n in names:
            fn = getattr(mod, n, None)
            if n not in found and callable(fn):
                found[n] = (fn, module)
    return found, why


# ------------------------------------------------------------ draft trees
# draft_steps / draft_tree (kernels/tree_inputs.py): the EAGLE draft loop's trees.


def tree_links(parent_list, sel, topk, n):
    """[3, bs, n] retrive_index / next_token / next_sibling, from the reference's
    parent rule (fast: no mask); equals the reference build's links."""
    bs = sel.shape[0]
    ref = reference()
    index = [[b * n + i for i in range(n)] for b in range(bs)]
    nxt = [[-1] * n for _ in range(bs)]
    sib = [[-1] * n for _ in range(bs)]
    for b in range(bs):
        parents = parent_list[b].tolist() if parent_list.numel() else []
        last_child = {}
        for i, p in enumerate(ref.tree_parents(parents, sel[b].tolist(), topk, n)):
            if i == 0 or p is None:
                continue
            if p in last_child:
                sib[b][last_child[p]] = i
            else:
                nxt[b][p] = i
            last_child[p] = i
    return torch.tensor([index, nxt, sib], dtype=torch.long)


def children(links, b):
    """children[node] of request b in sibling order."""
    return tree_children(links[1, b].tolist(), links[2, b].tolist())


def odd_coins(shape, gen):
    """Uniforms that are odd multiples of 2**-24: never equal to a probability
    sum with a coarser grid, so `coin < acc` and the older `coin <= acc` agree."""
    return (torch.randint(0, 2 ** 23, shape, generator=gen) * 2 + 1).float() / 2 ** 24


def child_entries(candidates, links):
    """(b, node, token) of every draft's parent row: where the target should put mass."""
    bs = candidates.shape[0]
    idx = [(b, node, int(candidates[b, c])) for b in range(bs) for node, kids in enumerate(children(links, b))
           for c in kids]
    return torch.tensor(idx, dtype=torch.long).view(-1, 3)


def softmax_probs(candidates, links, vocab, gen, device):
    """Realistic target probabilities: softmax over the vocab, each child's token
    lifted so its q spans ~0.2..0.95 (walks often go deep, and also get rejected)."""
    bs, n = candidates.shape
    logits = torch.randn(bs, n, vocab, generator=device_gen(gen, device), device=device)
    e = child_entries(candidates, links).to(device)
    lift = torch.log(torch.tensor(float(vocab))) + 5 * torch.rand(len(e), generator=gen) - 1
    logits.index_put_((e[:, 0], e[:, 1], e[:, 2]), lift.to(device), accumulate=True)
    return torch.softmax(logits, dim=-1)


def dyadic_probs(candidates, links, vocab, gen, device):
    """Integers over a power of two >= their sum: every partial sum is exact in
    fp32, so any summation order gives the same bits and the final token must
    match exactly. A bf16 cast keeps them integers over the same power of two,
    so that holds for bf16 too. Sparse background, heavy children."""
    bs, n = candidates.shape
    dgen = device_gen(gen, device)
    w = torch.randint(1, 3, (bs, n, vocab), generator=dgen, device=device)
    w *= torch.rand(bs, n, vocab, generator=dgen, device=device) < 0.01
    e = child_entries(candidates, links).to(device)
    heavy = torch.randint(0, 2048, (len(e),), generator=gen).to(device)
    w.index_put_((e[:, 0], e[:, 1], e[:, 2]), heavy, accumulate=True)
    scale = 2.0 ** torch.ceil(torch.log2(w.sum(-1, keepdim=True).clamp_min(1).double()))
    assert float(scale.max()) <= 2 ** 22  # partial sums fit fp32's 24 bits
    return (w / scale).float()


def device_gen(gen, device):
    """A generator on `device` seeded from `gen` (big random tensors are made there)."""
    return torch.Generator(device).manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=gen)))


def make_case(op, bs, topk, steps, n, *, device, vocab, seq_range, seed, probs="softmax",
              probs_dtype=torch.float32, mask_mode=FULL_MASK):
    """Inputs of one op, all on `device`; trees and targets are drawn on CPU (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    parent_list, sel, tokens = draft_tree(draft_steps(bs, topk, steps, min(vocab, DRAFT_VOCAB), gen), topk, n)
    seq_lens = torch.randint(seq_range[0], seq_range[1] + 1, (bs,), generator=gen)  # ragged
    case = dict(op=op, bs=bs, topk=topk, steps=steps, n=n, parent_list=parent_list, sel=sel, seq_lens=seq_lens,
                mask_mode=mask_mode)
    if op != "build_tree_kernel_efficient":
        links = tree_links(parent_list, sel, topk, n)
        candidates = torch.cat([torch.randint(0, vocab, (bs, 1), generator=gen), tokens], dim=1)
        case.update(candidates=candidates, links=links)
        if op == "verify_tree_greedy":
            # the target usually predicts one of the node's children: long accepts
            target = torch.randint(0, vocab, (bs, n), generator=gen)
            follow = torch.rand(bs, n, generator=gen) < 0.8
            for b in range(bs):
                for node, kids in enumerate(children(links, b)):
                    if kids and follow[b, node]:
                        target[b, node] = candidates[b, kids[int(torch.randint(0, len(kids), (1,), generator=gen))]]
            case.update(target=target)
        else:
            make = softmax_probs if probs == "softmax" else dyadic_probs
            case.update(coins=odd_coins((bs, n), gen), final_coins=odd_coins((bs,), gen),
                        target_probs=make(candidates, links, vocab, gen, device).to(probs_dtype))
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in case.items()}


def fresh_outputs(case, probs_dtype=None):
    """Output buffers as SGLang allocates them."""
    bs, n, dev = case["bs"], case["n"], case["sel"].device
    if case["op"] == "build_tree_kernel_efficient":
        mode = case["mask_mode"]
        if mode == 2:  # QLEN_ONLY_BITPACKING: one 1/2/4-byte word per node
            mask = torch.zeros(n * bs, dtype=[torch.uint8, torch.uint16, torch.uint32][(n > 8) + (n > 16)], device=dev)
        else:  # FULL_MASK rows span the prefix too (filled True, as SGLang does); QLEN_ONLY: n x n
            mask = torch.ones(int(case["seq_lens"].sum()) * n * (mode == FULL_MASK) + n * n * bs, dtype=torch.bool,
                              device=dev)
        return dict(mask=mask,
                    positions=torch.full((bs * n,), -7, dtype=torch.long, device=dev),
                    links=torch.full((3, bs, n), -1, dtype=torch.long, device=dev))
    out = dict(predicts=torch.zeros(bs * n, dtype=torch.int32, device=dev),
               accept_index=torch.full((bs, case["steps"] + 1), -1, dtype=torch.int32, device=dev),
               accept_num=torch.full((bs,), -5, dtype=torch.int32, device=dev))
    if case["op"] == "tree_speculative_sampling_target_only":
        out["draft_probs"] = torch.zeros_like(case["target_probs"], dtype=probs_dtype or case["target_probs"].dtype)
    return out


def caller(fn, case, out, *, cast_probs=None, threshold_single=1.0, threshold_acc=1.0):
    """A no-argument closure running `fn` on the case's inputs into `out`."""
    op = case["op"]
    if op == "build_tree_kernel_efficient":
        args = (case["parent_list"], case["sel"], case["seq_lens"], out["mask"], out["positions"],
                out["links"][0], out["links"][1], out["links"][2], case["topk"], case["steps"], case["n"],
                case["mask_mode"])
        return lambda: fn(*args)
    links = case["links"]
    head = (out["predicts"], out["accept_index"], out["accept_num"], case["candidates"], links[0], links[1], links[2])
    if op == "verify_tree_greedy":
        args = head + (case["target"],)
        return lambda: fn(*args)
    probs = case["target_probs"] if cast_probs is None else case["target_probs"].to(cast_probs)
    args = head + (case["coins"], case["final_coins"], probs, out["draft_probs"])
    kw = dict(threshold_single=threshold_single, threshold_acc=threshold_acc, deterministic=True)
    return lambda: fn(*args, **kw)


# ------------------------------------------------------------- comparison


def final_tie(case, out, b, mine, theirs, rel=1e-4):
    """Both final tokens are possible under fp32 rounding: the running sum of the
    residual crosses u = coin * total between them, within rel * total."""
    n = case["n"]
    num = int(out["accept_num"][b])
    last = int(out["accept_index"][b, num])
    q = case["target_probs"][b, last - b * n].double().cpu()  # retrive_index[b, i] == b * n + i
    p = out["draft_probs"][b, last - b * n].double().cpu()
    r = (q - p * (num != case["steps"])).clamp_min(0)
    total = float(r.sum())
    u = float(case["final_coins"][b]) * total
    lo, hi = sorted((mine, theirs))
    csum = r.cumsum(0)
    return (bool(r[lo] > 0) and bool(r[hi] > 0) and abs(float(csum[lo]) - u) <= rel * total
            and float(csum[hi - 1] - csum[lo]) <= rel * total)


def compare(case, a, b, exact_final=False):
    """(names of outputs that differ, number of final-token ties). `a`, `b`: outputs."""
    # masks as raw bytes (the ops write bytes; uint16/uint32 lack torch.equal)
    a = {k: (v.view(torch.uint8) if k == "mask" else v).cpu() for k, v in a.items()}
    b = {k: (v.view(torch.uint8) if k == "mask" else v).cpu() for k, v in b.items()}
    exact = [k for k in a if k not in ("predicts", "draft_probs")]
    bad = [k for k in exact if not torch.equal(a[k], b[k])]
    if "draft_probs" in a and not torch.equal(a["draft_probs"].float(), b["draft_probs"].float()):
        bad.append("draft_probs")
    if "predicts" not in a:
        return bad, 0
    if case["op"] == "verify_tree_greedy" or bad:
        return bad + (["predicts"] if not torch.equal(a["predicts"], b["predicts"]) else []), 0
    # sampling with equal accept paths: all predicts exact but each request's final token
    finals = a["accept_index"].gather(1, a["accept_num"].long().unsqueeze(1)).squeeze(1).long()
    keep = torch.ones_like(a["predicts"], dtype=torch.bool)
    keep[finals] = False
    if not torch.equal(a["predicts"][keep], b["predicts"][keep]):
        return bad + ["predicts"], 0
    ties = 0
    for req, pos in enumerate(finals.tolist()):
        x, y = int(a["predicts"][pos]), int(b["predicts"][pos])
        if x != y:
            if exact_final or not final_tie(case, a, req, x, y):
                return bad + ["final token"], ties
            ties += 1
    return bad, ties


def run_reference(case):
    """The torch reference on CPU copies; returns its outputs."""
    ref = reference()
    cpu = {k: v.cpu() if torch.is_tensor(v) else v for k, v in case.items()}
    out = fresh_outputs(cpu)
    caller(getattr(ref, case["op"]), cpu, out)()
    return out


# ------------------------------------------------------------------ timing


def time_us(call, iters, graph):
    """Median microseconds per call over `iters` samples of CALLS back-to-back
    calls. Eager: the GPU starts idle, so a launch-bound op is timed by its
    launch cost. Graph: CALLS calls captured once and replayed (device time)."""
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(CALLS):
                call()
        run = g.replay
    else:
        def run():
            for _ in range(CALLS):
                call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for i in range(WARMUP + iters):
        torch.cuda.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        if i >= WARMUP:
            samples.append(start.elapsed_time(end) * 1e3 / CALLS)
    return statistics.median(samples)


# -------------------------------------------------------------------- main


def shapes(topk):
    """(steps, draft tokens) per topk: chains of 4 for topk 1; the published
    preset (3 steps, 6 tokens) and a deeper tree (5, 8) otherwise."""
    return [(3, 4)] if topk == 1 else [(3, 6), (5, 8)]


def mean_accept(out):
    return round(float(out["accept_num"].float().mean()), 3) if "accept_num" in out else None


def run_case(op, bs, topk, steps, n, args, up):
    cuda = not args.dry_run
    seed = zlib.crc32(f"{op} {bs} {topk} {steps} {n}".encode())  # stable across runs
    case = make_case(op, bs, topk, steps, n, device="cuda" if cuda else "cpu",
                     vocab=args.vocab if cuda else 512, seq_range=(1024, 4096) if cuda else (1, 40), seed=seed)
    row = dict(op=SHORT[op], batch=bs, topk=topk, steps=steps, draft_tokens=n)
    ours_fn = getattr(our_kernels(), op)
    expected = run_reference(case)
    if not cuda:
        if op != "build_tree_kernel_efficient":  # the fast link builder must match the reference build
            links = torch.full((3, bs, n), -1, dtype=torch.long)
            reference().build_tree_kernel_efficient(
                case["parent_list"], case["sel"], torch.zeros(bs, dtype=torch.long), torch.ones(bs * n * n),
                torch.empty(bs * n, dtype=torch.long), *links, topk, steps, n, 1)  # QLEN_ONLY
            assert torch.equal(links, case["links"]), "tree_links differs from the reference build"
        out = fresh_outputs(case)
        caller(ours_fn, case, out)()
        bad, ties = compare(case, out, expected)
        row.update(equal=not bad, equal_to="torch reference", ties=ties, mismatch=bad or None,
                   mean_accept=mean_accept(expected))
        return row

    ours_out = fresh_outputs(case)
    caller(ours_fn, case, ours_out)()
    bad_ref, ties_ref = compare(case, ours_out, expected)
    row.update(equal_ref=not bad_ref, mean_accept=mean_accept(expected))
    mismatch = [f"vs reference: {x}" for x in bad_ref]

    theirs_fn = up.get(op, (None,))[0]
    theirs_out = None
    if theirs_fn is not None:
        theirs_out = fresh_outputs(case)
        try:
            caller(theirs_fn, case, theirs_out)()
            torch.cuda.synchronize()
        except Exception as e:  # an op that exists but rejects these inputs
            row["upstream_error"] = f"{type(e).__name__}: {e}"[:300]
            theirs_fn = theirs_out = None
    if theirs_out is not None:
        bad, ties = compare(case, ours_out, theirs_out)
        mismatch += [f"vs upstream: {x}" for x in bad]
        row.update(equal=not bad, equal_to="upstream", ties=ties)
    else:
        row.update(equal=not bad_ref, equal_to="torch reference", ties=ties_ref)

    timed = [("ours", caller(ours_fn, case, ours_out))]
    if theirs_fn is not None:
        timed.append(("upstream", caller(theirs_fn, case, theirs_out)))
    for who, call in timed:
        for graph, key in ((False, f"{who}_us"), (True, f"{who}_graph_us")):
            try:
                row[key] = time_us(call, args.iters, graph)
            except Exception as e:  # e.g. an op that cannot be captured: report, keep going
                row[key] = None
                row[f"{key}_error"] = f"{type(e).__name__}: {e}"[:300]
                torch.cuda.synchronize()
    for key, a, b in (("ratio", "ours_us", "upstream_us"), ("graph_ratio", "ours_graph_us", "upstream_graph_us")):
        if row.get(a) and row.get(b):
            row[key] = row[a] / row[b]
    if theirs_fn is not None:
        bad, _ = compare(case, ours_out, theirs_out)  # after thousands of eager + replayed calls
        mismatch += [f"after timing: {x}" for x in bad]
        row["equal"] = row["equal"] and not bad
    row["equal"] = row["equal"] and row["equal_ref"]
    row["mismatch"] = mismatch or None
    return row


def table(rows):
    lines = ["| op | batch | topk | steps/n | ours us | sgl-kernel us | ratio | ours graph us "
             "| sgl-kernel graph us | graph ratio | equal |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        eq = "yes" if r["equal"] else "NO"
        if r["equal_to"] != "upstream":
            eq += " (vs torch ref)"
        if r.get("ties"):
            eq += f" ({r['ties']} ties)"
        lines.append(
            f"| {r['op']} | {r['batch']} | {r['topk']} | {r['steps']}/{r['draft_tokens']} "
            f"| {fmt(r.get('ours_us'))} | {fmt(r.get('upstream_us'))} | {fmt(r.get('ratio'), 2)} "
            f"| {fmt(r.get('ours_graph_us'))} | {fmt(r.get('upstream_graph_us'))} | {fmt(r.get('graph_ratio'), 2)} "
            f"| {eq} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write results JSON here")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes (default 1 8 32 64; dry run 1 4)")
    p.add_argument("--topk", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, default=100, help=f"timed samples of {CALLS} calls each (median)")
    p.add_argument("--vocab", type=int, default=QWEN_VOCAB,
                   help="vocab of the sampling probs (fp32, bs*n*vocab*4 B each; 311 MB at bs 64, n 8)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU, Triton interpreter, tiny sizes, vs torch reference (default without CUDA)")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: --dry-run (CPU, Triton interpreter, tiny sizes, vs torch reference)")
        args.dry_run = True
    # Triton picks interpreter or compiler when a kernel is defined: set before importing ours.
    os.environ["TRITON_INTERPRET"] = "1" if args.dry_run else "0"
    batches = args.batch or ([1, 4] if args.dry_run else [1, 8, 32, 64])

    up, why = ({}, {}) if args.dry_run else upstream_ops()
    info = dict(
        command=shlex.join([sys.executable] + sys.argv if argv is None else [sys.executable, __file__] + argv),
        env={"TRITON_INTERPRET": os.environ["TRITON_INTERPRET"]},
        mode="dry-run" if args.dry_run else "cuda",
        device=f"cpu ({platform.machine()})" if args.dry_run else torch.cuda.get_device_name(),
        versions=versions(),
        upstream={op: up[op][1] if op in up else None for op in OPS},
        upstream_import_errors=why or None,
        settings=dict(batches=batches, topks=args.topk, iters=args.iters, calls_per_sample=CALLS,
                      warmup_samples=WARMUP, vocab=512 if args.dry_run else args.vocab,
                      seq_lens=[1, 40] if args.dry_run else [1024, 4096], tree_mask_mode="FULL_MASK",
                      target_probs="fp32 softmax (as SGLang passes them)", thresholds=[1.0, 1.0]),
    )
    print(f"device: {info['device']}  mode: {info['mode']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    if not args.dry_run:
        missing = [op for op in OPS if op not in up]
        if missing:
            print(f"SGLang's CUDA ops not importable for {missing} ({why}): reporting ours only, "
                  "equality checked against the torch reference")
        for op in OPS:
            if op in up:
                print(f"upstream {op}: {up[op][1]}")

    rows = []
    for op in OPS:
        for bs in batches:
            for topk in args.topk:
                for steps, n in shapes(topk):
                    row = run_case(op, bs, topk, steps, n, args, up)
                    rows.append(row)
                    print(json.dumps(row, default=str), flush=True)  # kept if a time limit cuts the run
                    if not row["equal"]:
                        print(f"MISMATCH {row}", file=sys.stderr)
    info["cases"] = rows
    info["all_equal"] = all(r["equal"] for r in rows)
    print()
    print(table(rows))
    for r in rows:
        for key in sorted(k for k in r if k.endswith("error")):
            print(f"{r['op']} batch {r['batch']} topk {r['topk']}: {key}: {r[key]}")
    print()
    print("us = microseconds per call; eager includes Python + launch overhead (GPU idle at start), graph = "
          "CUDA-graph replay; ratio = ours / sgl-kernel (< 1: ours faster). "
          f"all equal: {'yes' if info['all_equal'] else 'NO'}")
    if args.out:
        Path(args.out).write_text(json.dumps(info, indent=1))
        print(f"wrote {args.out}")
    return 0 if info["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
