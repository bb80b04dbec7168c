"""The built-in example: a tiny random target and two EAGLE-3 drafts, served by real SGLang here.

Prints the baseline's output, then one row per run: whether it equals the baseline token for
token, and the acceptance SGLang counted (accept length as /metrics reports it,
sglang_eagle3_ext.acceptance). SGLang's own log goes to a file the demo names. On a CPU this runs
Triton in its interpreter: the timings are not speed figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

from .acceptance import from_requests
from .cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS, ensure_cpu_env
from .tiny_models import DEMO_PROMPTS, build_eagle3_draft, build_qwen2_target


def run_engine(target: str, draft: str | None = None, prompts=DEMO_PROMPTS,
               max_new_tokens: int = 24, sampling: dict | list | None = None, **extra) -> dict:
    """Generate prompts (texts, or token-id lists) with sgl.LLM, greedy unless `sampling` (one dict,
    or one per prompt) says otherwise; returns texts, token ids and acceptance. `extra` overrides
    engine arguments (e.g. speculative_eagle_topk)."""
    import sglang as sgl

    kwargs = dict(CPU_ENGINE_ARGS)
    if draft:
        kwargs.update(EAGLE3_ARGS, speculative_draft_model_path=draft)
    kwargs.update(extra)
    greedy = {"temperature": 0, "max_new_tokens": max_new_tokens}
    params = ([dict(greedy, **s) for s in sampling] if isinstance(sampling, list)
              else dict(greedy, **(sampling or {})))
    prompts = list(prompts)
    by_ids = bool(prompts) and isinstance(prompts[0], list)
    llm = sgl.LLM(model=target, **kwargs)
    try:
        start = time.perf_counter()
        outs = (llm.generate(input_ids=prompts, sampling_params=params) if by_ids
                else llm.generate(prompts, params))
        wall = time.perf_counter() - start
        info = llm.get_server_info()
        num_draft_tokens = llm.server_args.speculative_num_draft_tokens if draft else None
    finally:
        llm.shutdown()
    acc = from_requests((o["meta_info"] for o in outs), num_draft_tokens)
    return {"texts": [o["text"] for o in outs],
            "output_ids": [o.get("output_ids") for o in outs],
            "completion_tokens": sum(o["meta_info"]["completion_tokens"] for o in outs),
            "verify_steps": acc["verify_steps"], "accepted_tokens": acc["accepted_tokens"],
            "accept_length": acc["accept_length"], "accept_rate": acc["accept_rate"],
            "wall_s": wall, "server_info": info}


@contextlib.contextmanager
def output_to(log_path: str):
    """Send this process's stdout/stderr (file descriptors and Python streams, so SGLang's
    subprocesses' too) to log_path; yields a stream to the terminal for the demo's own lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    saved_fds, saved_streams = [os.dup(1), os.dup(2)], (sys.stdout, sys.stderr)
    log = open(log_path, "a", buffering=1)
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        yield terminal
    finally:
        log.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
        log.close()
        terminal.close()


def build_models(root: str) -> dict:
    """The demo's three models: a bigram target, a draft that agrees with it, a random draft."""
    paths = {"target": os.path.join(root, "qwen2-tiny-bigram"),
             "agreeing": os.path.join(root, "qwen2-tiny-bigram-eagle3"),
             "random": os.path.join(root, "qwen2-tiny-eagle3-random")}
    build_qwen2_target(paths["target"], kind="bigram")
    build_eagle3_draft(paths["agreeing"], paths["target"], kind="agreeing")
    build_eagle3_draft(paths["random"], paths["target"], kind="random")
    return paths


def table(results: dict) -> list[str]:
    base = results["baseline"]
    lines = ["prompt -> baseline output"]
    lines += [f"  {p!r} -> {t!r}" for p, t in zip(DEMO_PROMPTS, base["texts"])]
    lines += ["", f"{'run':<26}{'same as baseline':>18}{'tokens':>8}{'verify steps':>14}"
                  f"{'accept length':>15}"]
    for label, r in results.items():
        same = "yes" if r["output_ids"] == base["output_ids"] else "NO"
        acc = f"{r['accept_length']:.2f}" if r["accept_length"] is not None else "-"
        lines.append(f"{label:<26}{same:>18}{r['completion_tokens']:>8}"
                     f"{r['verify_steps'] or '-':>14}{acc:>15}")
    lines.append("(accept length = 1 + accepted draft tokens per verify step, as "
                 "sglang:spec_accept_length on /metrics)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sglang_eagle3_ext demo", description=__doc__)
    parser.add_argument("--models-dir", help="where to build the tiny models (default: a temp dir)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ensure_cpu_env()
    # The demo measures acceptance itself: the startup self-check's probes would only repeat it.
    os.environ.setdefault("SGLANG_EAGLE3_EXT_SELFCHECK", "off")
    # SGLang's torch.compile'd helpers run eagerly: compiling them for the CPU costs more than a
    # tiny model's whole run saves (~8 s of CPU per EAGLE engine on 2 cores).
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
    root = args.models_dir or tempfile.mkdtemp(prefix="eagle3-demo-")
    log_path = os.path.join(root, "sglang.log")
    os.makedirs(root, exist_ok=True)
    with output_to(log_path) as out:
        print(f"tiny models and SGLang's log in {root}", file=out)
        paths = build_models(root)
        runs = [("baseline", None), ("EAGLE3, agreeing draft", paths["agreeing"]),
                ("EAGLE3, random draft", paths["random"])]
        results = {}
        for label, draft in runs:
            print(f"running {label} ...", file=out)
            results[label] = run_engine(paths["target"], draft, max_new_tokens=args.max_new_tokens)
    print("\n" + "\n".join(table(results)))
    lossless = all(r["output_ids"] == results["baseline"]["output_ids"] for r in results.values())
    print(f"\n{'lossless' if lossless else 'NOT lossless'}; {time.perf_counter() - start:.0f} s "
          f"(CPU timings are not speed figures; SGLang's log: {log_path})")
    return 0 if lossless else 1
