"""benchmarks/bench_tree_ops.py --dry-run: every case runs through the Triton
interpreter on CPU, equals the torch reference, and lands in the JSON."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tree_ops_dry_run(tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/bench_tree_ops.py", "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| op | batch | topk |" in proc.stdout  # the Markdown table

    r = json.loads(out.read_text())
    assert r["mode"] == "dry-run" and r["all_equal"] is True
    assert "bench_tree_ops.py" in r["command"] and "--dry-run" in r["command"]
    assert {"torch", "triton", "sglang", "sgl_kernel"} <= set(r["versions"])
    batches, topks = r["settings"]["batches"], r["settings"]["topks"]
    assert len(batches) >= 2 and {1, 4} <= set(topks)

    ops = ("build", "verify", "sample")
    got = {(c["op"], c["batch"], c["topk"]) for c in r["cases"]}
    assert got == set(itertools.product(ops, batches, topks))
    for c in r["cases"]:
        assert c["equal"] is True and c["equal_to"] == "torch reference", c
    # topk 4 runs the preset tree (3 steps, 6 tokens) and a deeper one (5, 8)
    assert {(c["steps"], c["draft_tokens"]) for c in r["cases"] if c["topk"] == 4} == {(3, 6), (5, 8)}
    # the generated trees and targets lead past the first draft: the checks see deep walks
    for op in ("verify", "sample"):
        assert max(c["mean_accept"] for c in r["cases"] if c["op"] == op) >= 2
