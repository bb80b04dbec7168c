"""benchmarks/bench_penalty_fixup.py --dry-run: real eagle_sample calls on CPU (Triton interpreter) in
every setting, the fix-up checked against the torch reference, all of it in the JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_penalty_fixup_dry_run(tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "benchmarks/bench_penalty_fixup.py", "--dry-run", "--batch", "1", "2",
                           "--iters", "1", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| batch | topk | steps/n | penalties |" in proc.stdout  # the Markdown table

    r = json.loads(out.read_text())
    assert r["mode"] == "dry-run" and r["all_equal"] is True
    assert "bench_penalty_fixup.py" in r["command"] and "--dry-run" in r["command"]
    assert {"torch", "triton", "sglang"} <= set(r["versions"])
    got = {(c["batch"], c["topk"], c["penalties"]) for c in r["cases"]}
    assert got == {(b, k, p) for b in (1, 2) for k in (1, 4) for p in ("rep1.05", "all")}
    for c in r["cases"]:
        assert c["equal"] is True
        assert all(c[k] > 0 for k in ("plain_us", "relaxed_us", "exact_us", "fixup_us", "advance_us")), c
