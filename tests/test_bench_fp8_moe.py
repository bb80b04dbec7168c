"""benchmarks/bench_fp8_moe.py --dry-run --tune: runs through the Triton interpreter on CPU,
matches the torch reference, lands in the JSON, and writes config files the loader reads back."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_fp8_moe_dry_run(tmp_path):
    out, cfg_dir = tmp_path / "r.json", tmp_path / "configs"
    env = dict(os.environ, TRITON_INTERPRET="1")
    cmd = [sys.executable, "benchmarks/bench_fp8_moe.py", "--dry-run", "--tune", "--shapes", "tiny-shard192",
           "--m", "1", "3", "--config-dir", str(cfg_dir), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| shape | E | top-k | H | I | M |" in proc.stdout

    r = json.loads(out.read_text())
    assert r["mode"] == "dry-run" and r["all_ok"] is True
    assert "--dry-run" in r["command"] and {"torch", "triton", "sglang"} <= set(r["versions"])
    assert [(c["name"], c["M"]) for c in r["cases"]] == [("tiny-shard192", 1), ("tiny-shard192", 3)]
    for c in r["cases"]:
        assert c["inter"] == 192 and c["w1_block"] == [64, 128] and c["w2_block"] == [128, 64]
        assert c["ours_ok"] and c["ours_rel_err"] < 1e-2 and "ours_us" not in c  # no CPU timings

    from sglang_eagle3_ext.kernels import fp8_moe_config as cfg

    assert sorted(Path(p).name for p in r["tuned_files"]) == sorted(p.name for p in cfg_dir.iterdir())
    for down in (False, True):
        name = cfg.config_file_name(4, 192, 128, "cpu", (64, 128), down)
        table = cfg.load_configs(name, (str(cfg_dir),))
        assert set(table) == {1, 3} and all(c["BLOCK_SIZE_M"] == 16 for c in table.values())
