"""benchmarks/bench_tree_attention.py --dry-run: runs through the Triton interpreter on CPU, our
kernel equals SGLang's extend kernel on every case, and the JSON says what ran."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tree_attention_dry_run(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_tree_attention.py", "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| shape | ctx | B | n | MB | ours us | SGLang us |" in proc.stdout
    r = json.loads(out.read_text())
    assert r["mode"] == "dry-run" and r["all_equal"] is True
    assert r["sglang_kernel"].endswith("extend_attention_fwd")
    assert {c["name"] for c in r["cases"]} == {"tiny-gqa", "tiny-mla"} and len(r["cases"]) == 8
    assert all(c["equal"] and "ours_us" not in c for c in r["cases"])  # no CPU timings
