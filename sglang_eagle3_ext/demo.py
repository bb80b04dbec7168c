"""The built-in example: tiny random target + EAGLE-3 drafts, served by real SGLang on this machine.

Prints each run's output next to the baseline's and the acceptance SGLang reports. On a CPU
this runs Triton in its interpreter: the timings are not speed figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from .cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS, ensure_cpu_env
from .tiny_models import DEMO_PROMPTS, build_demo_models


def run_engine(target: str, draft: str | None = None, prompts=DEMO_PROMPTS,
               max_new_tokens: int = 24, sampling: dict | None = None, **extra) -> dict:
    """Generate prompts with sgl.LLM (greedy unless `sampling` says otherwise); returns texts,
    token ids and acceptance. `extra` overrides engine arguments (e.g. speculative_eagle_topk)."""
    import sglang as sgl

    kwargs = dict(CPU_ENGINE_ARGS)
    if draft:
        kwargs.update(EAGLE3_ARGS, speculative_draft_model_path=draft)
    kwargs.update(extra)
    params = dict({"temperature": 0, "max_new_tokens": max_new_tokens}, **(sampling or {}))
    llm = sgl.LLM(model=target, **kwargs)
    try:
        start = time.perf_counter()
        outs = llm.generate(list(prompts), params)
        wall = time.perf_counter() - start
        info = llm.get_server_info()
    finally:
        llm.shutdown()
    tokens = sum(o["meta_info"]["completion_tokens"] for o in outs)
    verify = sum(o["meta_info"].get("spec_verify_ct") or 0 for o in outs)
    return {"texts": [o["text"] for o in outs],
            "output_ids": [o.get("output_ids") for o in outs],
            "completion_tokens": tokens, "verify_steps": verify,
            "accept_length": tokens / verify if verify else None,
            "wall_s": wall, "server_info": info}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sglang_eagle3_ext demo", description=__doc__)
    parser.add_argument("--models-dir", help="where to build the tiny models (default: a temp dir)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    ensure_cpu_env()
    root = args.models_dir or tempfile.mkdtemp(prefix="eagle3-demo-")
    print(f"building tiny models in {root} ...", flush=True)
    paths = build_demo_models(root)

    runs = [("baseline", paths["bigram_target"], None),
            ("EAGLE3, agreeing draft", paths["bigram_target"], paths["agreeing_draft"]),
            ("EAGLE3, random draft", paths["bigram_target"], paths["random_draft"])]
    results = {}
    for label, target, draft in runs:
        print(f"running {label} ...", flush=True)
        results[label] = run_engine(target, draft, max_new_tokens=args.max_new_tokens)

    base = results["baseline"]
    print("\nprompt -> baseline output")
    for prompt, text in zip(DEMO_PROMPTS, base["texts"]):
        print(f"  {prompt!r} -> {text!r}")
    print(f"\n{'run':<26}{'same as baseline':>18}{'tokens':>8}{'verify steps':>14}{'accept length':>15}")
    for label, r in results.items():
        same = "yes" if r["texts"] == base["texts"] else "NO"
        acc = f"{r['accept_length']:.2f}" if r["accept_length"] else "-"
        steps = r["verify_steps"] or "-"
        print(f"{label:<26}{same:>18}{r['completion_tokens']:>8}{steps:>14}{acc:>15}")
    print("\n(accept length = tokens per verify step, as SGLang reports it; CPU timings are not speed figures)")
    lossless = all(r["texts"] == base["texts"] for r in results.values())
    return 0 if lossless else 1
