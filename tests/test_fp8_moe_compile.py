"""The FP8 MoE kernel compiles to cubins for H100/H200 (sm90) and sm89 with Triton's real compiler
and ptxas, without a GPU: catches what the interpreter cannot (dot operand types, layouts, shared
memory, fp8 support per architecture). Running it on a GPU is test_fp8_moe.py with
TRITON_INTERPRET=0."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernel_compiles_for_sm90_and_sm89(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fp8_moe_compile.py"), "90", "89"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {r["cap"] for r in rows} == {90, 89} and len(rows) == 10
    for r in rows:
        assert r["ok"], r
        assert r["cubin_bytes"] > 0 and r["shared_bytes"] <= 227 * 1024  # H100's per-block limit
