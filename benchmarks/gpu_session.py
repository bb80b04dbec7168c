"""The Python half of benchmarks/gpu_session.sh: what the host has, and the results bundle.

    python benchmarks/gpu_session.py probe --out env.json
    python benchmarks/gpu_session.py bundle WORK OUT [--elapsed S] [--budget S] [--dry-run]

bundle reads the session's work folder (steps.tsv, env.json, gpu_tests.xml, bench_*.json and the
logs) and writes three files into OUT (a device call returns at most 8): gpu_session.json (every
result, per step), gpu_session.md (the tables, and each target of the project's GPU issue with the
measured figure next to it) and gpu_session.tar.gz (the whole work folder: logs, server logs,
JSON). A benchmark cut short by its time limit still reports the cases it printed. Exit 1 when a
step failed or a check inside it did.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

BENCHES = ("bench_tree_ops", "bench_fp8_moe", "bench_tree_attention", "bench_penalty_fixup")


def probe() -> dict:
    out = {"python": platform.python_version(), "machine": platform.machine(), "modules": {}}
    for name in ("torch", "triton", "sglang", "sgl_kernel", "flashinfer", "transformers", "sglang_eagle3_ext"):
        try:
            mod = importlib.import_module(name)
            out["modules"][name] = getattr(mod, "__version__", "?")
        except Exception as e:  # a missing module is a fact about the host, not an error here
            out["modules"][name] = f"not importable: {type(e).__name__}: {e}"[:200]
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                          "memory_GiB": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    except Exception as e:
        out["gpu_error"] = str(e)[:200]
    return out


def read_steps(work: Path) -> list:
    path = work / "steps.tsv"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    steps = []
    for line in lines:
        name, rc, secs, limit = line.split("\t")
        steps.append({"step": name, "exit": int(rc) if rc.lstrip("-").isdigit() else rc,
                      "seconds": int(secs), "limit": int(limit),
                      "timed_out": rc in ("124", "137")})
    return steps


OUTCOME = re.compile(r"\b(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def from_log(log: Path) -> dict | None:
    """Test counts from pytest -v lines, for a run the time limit cut before it wrote its XML."""
    if not log.exists():
        return None
    counts = {"passed": 0, "failed": [], "errors": 0, "skipped": 0}
    for line in log.read_text(errors="replace").splitlines():
        m = OUTCOME.search(line)
        if not m or "::" not in line:
            continue
        test = next((w for w in line.split() if "::" in w), "?")
        kind = m.group(1)
        if kind == "PASSED" or kind == "XPASS":
            counts["passed"] += 1
        elif kind == "FAILED":
            counts["failed"].append(test)
        elif kind == "ERROR":
            counts["errors"] += 1
            counts["failed"].append(test)
        else:
            counts["skipped"] += 1
    n = counts["passed"] + len(counts["failed"]) + counts["skipped"]
    if not n:
        return None
    return {"tests": n, "failures": len(counts["failed"]) - counts["errors"], "errors": counts["errors"],
            "skipped": counts["skipped"], "failed": counts["failed"][:50], "partial": True}


def junit(path: Path) -> dict | None:
    if not path.exists():
        return from_log(path.with_suffix(".log"))
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(f"{case.get('classname')}::{case.get('name')}")
    total["failed"] = failed[:50]
    return total


def bench_result(work: Path, name: str) -> dict | None:
    """The benchmark's JSON, or (cut short) the per-case JSON lines it printed, marked partial."""
    path = work / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    log = work / f"{name}.log"
    if not log.exists():
        return None
    cases = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                cases.append(json.loads(line))
            except ValueError:
                pass
    return {"partial": True, "cases": cases} if cases else None


def tables(log: Path) -> str:
    """The Markdown tables (and the note lines after them) a script printed."""
    if not log.exists():
        return ""
    out, keep = [], False
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("|"):
            keep = True
        elif keep and (not line.strip() or line.startswith(("{", "wrote", "["))):
            keep = False
            out.append("")
            continue
        if keep:
            out.append(line)
    return "\n".join(out).strip()


def _vals(cases, key, cond=lambda c: True):
    return [c[key] for c in cases if c.get(key) is not None and cond(c)]


def targets(results: dict) -> list:
    """The GPU issue's targets with the figures measured against them: (what, figure, met)."""
    out = []
    ops = (results.get("bench_tree_ops") or {}).get("cases", [])
    r = _vals(ops, "graph_ratio")
    if r:
        out.append(("tree ops no slower than sgl-kernel (CUDA graph, ours / theirs <= 1)",
                    f"worst ratio {max(r):.2f}", max(r) <= 1.0))
    moe = (results.get("bench_fp8_moe") or {}).get("cases", [])
    s = _vals(moe, "speedup", lambda c: c["M"] <= 32)
    if s:
        out.append(("FP8 MoE >= 1.5x SGLang's Triton MoE at M <= 32", f"min {min(s):.2f}x", min(s) >= 1.5))
    f = _vals(moe, "ours_copy_frac", lambda c: c["M"] >= 8)
    if f:
        out.append(("FP8 MoE >= 60% of copy bandwidth at M >= 8", f"min {100 * min(f):.0f}%", min(f) >= 0.6))
    att = (results.get("bench_tree_attention") or {}).get("cases", [])
    s = _vals(att, "speedup", lambda c: c["context"] >= 4096)
    if s:
        out.append(("tree attention >= 2x SGLang's Triton target-verify at context >= 4k",
                    f"min {min(s):.2f}x", min(s) >= 2.0))
    pen = (results.get("bench_penalty_fixup") or {}).get("cases", [])
    for b in sorted({c["batch"] for c in pen}):
        r = _vals(pen, "exact_over_plain", lambda c: c["batch"] == b)
        if r:
            out.append((f"exact penalties: eagle_sample with / without penalties at B={b} (issue 14)",
                        f"worst {max(r):.2f}x", None))
    e2e = results.get("bench_e2e") or {}
    for b, x in (e2e.get("speedup") or {}).items():
        out.append((f"e2e EAGLE-3 / baseline at B={b} (simulated accept length "
                    f"{e2e.get('simulated_accept_length')})", f"{x:.2f}x", None))
    return out


def checks_ok(name: str, result) -> bool | None:
    """A step's own verdict from its JSON (None: nothing to judge)."""
    if not result:
        return None
    if name == "bench_fp8_moe":
        return result.get("all_ok")
    if name in ("bench_tree_ops", "bench_tree_attention", "bench_penalty_fixup"):
        return result.get("all_equal")
    if name == "bench_e2e":
        return result.get("ok")
    return None


def bundle(work: Path, out: Path, elapsed=None, budget=None, dry_run=False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    steps = read_steps(work)
    env = json.loads((work / "env.json").read_text()) if (work / "env.json").exists() else None
    results = {name: bench_result(work, name) for name in (*BENCHES, "bench_e2e")}
    tests = junit(work / "gpu_tests.xml")
    for s in steps:
        s["checks_ok"] = checks_ok(s["step"], results.get(s["step"]))
        if s["step"] == "gpu_tests" and tests:
            s["checks_ok"] = not (tests["failures"] or tests["errors"])
    failed = [s["step"] for s in steps if s["exit"] != 0 or s["checks_ok"] is False]
    summary = {"mode": "dry-run" if dry_run else "gpu", "date": datetime.datetime.now(datetime.timezone.utc)
               .isoformat(timespec="seconds"), "elapsed_s": elapsed, "budget_s": budget, "host": env,
               "steps": steps, "failed_steps": failed, "gpu_tests": tests, "results": results,
               "targets": [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(results)]}
    (out / "gpu_session.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")

    md = [f"# GPU session ({summary['mode']}, {summary['date']})", ""]
    if env:
        gpu = env.get("gpu") or {}
        md.append(f"Host: {gpu.get('name', 'no GPU')} (sm {gpu.get('capability', '-')}, {gpu.get('memory_GiB', '-')} GiB), "
                  f"Python {env['python']}; " + ", ".join(f"{k} {v}" for k, v in env["modules"].items()))
        md.append("")
    md += [f"Steps ({elapsed} s of a {budget} s budget; command: `bash benchmarks/gpu_session.sh`):", "",
           "| step | exit | s | limit s | checks |", "|---|---|---|---|---|"]
    for s in steps:
        exit_ = "timed out" if s["timed_out"] else s["exit"]
        md.append(f"| {s['step']} | {exit_} | {s['seconds']} | {s['limit']} | "
                  f"{'-' if s['checks_ok'] is None else ('ok' if s['checks_ok'] else 'FAILED')} |")
    if tests:
        md += ["", f"GPU tests: {tests['tests']} run, {tests['failures']} failed, {tests['errors']} errors, "
               f"{tests['skipped']} skipped" + (" (counted from the log: cut short)" if tests.get("partial") else "")
               + "." + ("" if not tests["failed"] else " Failed: " + ", ".join(tests["failed"]))]
    if summary["targets"]:
        md += ["", "| target | measured | met |", "|---|---|---|"]
        for t in summary["targets"]:
            md.append(f"| {t['target']} | {t['measured']} | {'-' if t['met'] is None else ('yes' if t['met'] else 'no')} |")
    for name in (*BENCHES, "bench_e2e"):
        text = tables(work / f"{name}.log")
        partial = (results.get(name) or {}).get("partial")
        if text or partial:
            md += ["", f"## {name}" + (" (cut short by its time limit: cases printed before)" if partial else ""),
                   "", text or "(no table printed)"]
    (out / "gpu_session.md").write_text("\n".join(md) + "\n")

    with tarfile.open(out / "gpu_session.tar.gz", "w:gz") as tar:
        tar.add(work, arcname="gpu_session")
    print((out / "gpu_session.md").read_text())
    return 1 if failed or not steps else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--out", required=True)
    b = sub.add_parser("bundle")
    b.add_argument("work")
    b.add_argument("out")
    b.add_argument("--elapsed", type=int)
    b.add_argument("--budget", type=int)
    b.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "probe":
        Path(args.out).write_text(json.dumps(probe(), indent=1))
        return 0
    return bundle(Path(args.work), Path(args.out), args.elapsed, args.budget, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
