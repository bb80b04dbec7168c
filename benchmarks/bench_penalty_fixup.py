"""What exact penalties cost per EAGLE verify step: SGLang's eagle_sample with and without them.

    python benchmarks/bench_penalty_fixup.py [--out results.json] [--batch 1 32] [--topk 1 4] [--iters N]
                                             [--vocab V] [--dry-run]

For every (batch, tree, penalties) one real `eagle_utils.eagle_sample` call (greedy verify, the
scheduler's forward copy of the sampling info) is timed in three settings:
  plain    no penalties: the eagle_sample.penalties patch passes straight through (no launch);
  relaxed  the penalties, the patch reverted: SGLang's own repeat_interleave application;
  exact    the penalties, the patch applied: per-node fix-up + state advance (two launches).
and the two kernels alone (penalty_fixup, penalty_advance). Each time is the median wall time of
one call with the device synchronized after it (the host-side cost, Python and launches included,
plus the device time). Before timing, the exact setting's logits are checked against the
plain-torch reference. Prints a Markdown table, writes JSON; exits 1 if a check fails.

Without CUDA (or with --dry-run) everything runs on CPU through the Triton interpreter at small
sizes, a few iterations: the figures are then the interpreter's, not a GPU's.
"""

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time

import torch
from bench_common import fmt, versions

PENALTIES = {  # the Qwen2.5-Instruct generation_config default, and everything at once
    "rep1.05": dict(repetition_penalty=1.05),
    "all": dict(repetition_penalty=1.3, frequency_penalty=0.5, presence_penalty=1.0, min_new_tokens=8,
                stop_token_ids={5}, logit_bias={"7": -2.0}),
}
QWEN_VOCAB = 152064


def shapes(topk):
    """(steps, draft tokens): a chain of 4 for topk 1, the 3-step 8-token tree for topk 4."""
    return (3, 4) if topk == 1 else (3, 8)


def tree(bs, topk, steps, n, vocab, gen):
    from sglang_eagle3_ext.kernels import tree_reference as tref
    from sglang_eagle3_ext.kernels.tree_inputs import draft_steps, draft_tree

    parent_list, sel, tokens = draft_tree(draft_steps(bs, topk, steps, min(vocab, 4096), gen), topk, n)
    candidates = torch.cat([torch.randint(0, vocab, (bs, 1), generator=gen), tokens], dim=1)
    links = torch.full((3, bs, n), -1, dtype=torch.long)
    tref.build_tree_kernel_efficient(parent_list, sel, torch.ones(bs, dtype=torch.long),
                                     torch.ones(bs * n * n, dtype=torch.bool), torch.zeros(bs * n, dtype=torch.long),
                                     links[0], links[1], links[2], topk, steps, n, 1)
    return candidates, links


def timed(call, iters, cuda):
    for _ in range(2):
        call()
    samples = []
    for _ in range(iters):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def run_case(bs, topk, penalties, args, device, patch):
    from sglang_eagle3_ext import penalty_harness as h
    from sglang_eagle3_ext.kernels import penalty_fixup_reference as ref
    from sglang_eagle3_ext.kernels.penalty_fixup import penalty_advance, penalty_fixup
    from sglang_eagle3_ext.patches.eagle_sample import penalty_state

    steps, n = shapes(topk)
    vocab = args.vocab
    gen = torch.Generator().manual_seed(bs * 100 + topk)
    candidates, links = tree(bs, topk, steps, n, vocab, gen)
    history = torch.randint(0, vocab, (6, bs), generator=gen).tolist()
    logits = (3 * torch.randn(bs * n, vocab, generator=gen)).to(device)
    cand, lnk = candidates.to(device), links.to(device)
    vi = h.verify_input(cand, lnk, steps, topk)
    params = [PENALTIES[penalties]] * bs
    row = dict(batch=bs, topk=topk, steps=steps, draft_tokens=n, vocab=vocab, penalties=penalties)

    def setting(with_params, patched):
        if patched and patch.status is None:
            assert patch.run() == "applied", patch.detail
        if not patched and patch.status is not None:
            patch.revert()
        p = params if with_params else [{}] * bs
        orch = h.orchestrator(p, vocab, history, device=device)
        batch = h.verify_batch(orch, p, vocab, 0.0, device)
        return lambda: h.run_eagle_sample(vi, batch, logits), orch

    # the check: the exact setting's logits == the reference's, on these inputs
    orch = h.orchestrator(params, vocab, history, device=device)
    state = penalty_state(orch, h.logit_bias(params, vocab, device), h.penalizer_classes())
    mine, expected = logits.clone(), logits.cpu().clone()
    penalty_fixup(mine, cand, lnk[1], lnk[2], state, max_path=steps + 1)
    cpu_state = penalty_state(h.orchestrator(params, vocab, history), h.logit_bias(params, vocab),
                              h.penalizer_classes())
    ref.penalty_fixup(expected, candidates, links[1], links[2], cpu_state)
    row["equal"] = bool(torch.equal(mine.cpu(), expected))

    cuda = device == "cuda"
    for name, with_params, patched in (("plain", False, True), ("relaxed", True, False), ("exact", True, True)):
        call, _ = setting(with_params, patched)
        row[f"{name}_us"] = timed(call, args.iters, cuda)
    accept = torch.ones(bs, dtype=torch.int32, device=device) * 2
    accept_index = torch.arange(bs * n, device=device, dtype=torch.int32).view(bs, n)[:, : steps + 1].contiguous()
    row["fixup_us"] = timed(lambda: penalty_fixup(logits.clone(), cand, lnk[1], lnk[2], state, max_path=steps + 1),
                            args.iters, cuda)
    row["advance_us"] = timed(lambda: penalty_advance(state, cand.reshape(-1), cand.reshape(-1), accept_index, accept), args.iters, cuda)
    row["exact_over_plain"] = row["exact_us"] / row["plain_us"]
    row["exact_over_relaxed"] = row["exact_us"] / row["relaxed_us"]
    return row


def table(rows):
    lines = ["| batch | topk | steps/n | penalties | plain us | relaxed us | exact us | exact/plain "
             "| exact/relaxed | fix-up us | advance us | equal |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['topk']} | {r['steps']}/{r['draft_tokens']} | {r['penalties']} "
                     f"| {fmt(r['plain_us'])} | {fmt(r['relaxed_us'])} | {fmt(r['exact_us'])} "
                     f"| {fmt(r['exact_over_plain'], 2)} | {fmt(r['exact_over_relaxed'], 2)} "
                     f"| {fmt(r['fixup_us'])} | {fmt(r['advance_us'])} | {'yes' if r['equal'] else 'NO'} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write results JSON here")
    p.add_argument("--batch", type=int, nargs="+", help="batch sizes (default 1 32; dry run 1 4)")
    p.add_argument("--topk", type=int, nargs="+", default=[1, 4])
    p.add_argument("--iters", type=int, help="timed calls per setting (median; default 50, dry run 3)")
    p.add_argument("--vocab", type=int, help=f"vocabulary (default {QWEN_VOCAB}, dry run 512)")
    p.add_argument("--dry-run", action="store_true", help="CPU, Triton interpreter, small sizes (default without CUDA)")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: --dry-run (CPU, Triton interpreter, small sizes)")
        args.dry_run = True
    # Triton picks interpreter or compiler when a kernel is defined: set before importing ours.
    os.environ["TRITON_INTERPRET"] = "1" if args.dry_run else "0"
    batches = args.batch or ([1, 4] if args.dry_run else [1, 32])
    args.iters = args.iters or (3 if args.dry_run else 50)
    args.vocab = args.vocab or (512 if args.dry_run else QWEN_VOCAB)
    device = "cpu" if args.dry_run else "cuda"

    from sglang_eagle3_ext import penalty_harness as h
    from sglang_eagle3_ext.patches import eagle_sample, tree_ops

    info = dict(
        command=shlex.join([sys.executable] + sys.argv if argv is None else [sys.executable, __file__] + argv),
        env={"TRITON_INTERPRET": os.environ["TRITON_INTERPRET"]},
        mode="dry-run" if args.dry_run else "cuda",
        device=f"cpu ({platform.machine()})" if args.dry_run else torch.cuda.get_device_name(),
        versions=versions(),
        settings=dict(batches=batches, topks=args.topk, iters=args.iters, vocab=args.vocab,
                      penalties={k: {n: sorted(v) if isinstance(v, set) else v for n, v in p.items()}
                                 for k, p in PENALTIES.items()},
                      timing="median wall time per call, device synchronized after each"),
    )
    print(f"device: {info['device']}  mode: {info['mode']}")
    rows = []
    with h.verify_context(device):
        tree_status = tree_ops.PATCH.run()  # CPU / no sgl-kernel: the plugin's tree verify
        for bs in batches:
            for topk in args.topk:
                for penalties in PENALTIES:
                    rows.append(run_case(bs, topk, penalties, args, device, eagle_sample.PATCH))
                    print(json.dumps(rows[-1]), flush=True)
        eagle_sample.PATCH.revert()
        if tree_status == "applied":
            tree_ops.PATCH.revert()
    result = dict(info, cases=rows, all_equal=all(r["equal"] for r in rows))
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
