"""benchmarks/gpu_session.sh --dry-run: the whole GPU session on the CPU, so it cannot rot before a
GPU is lent. Every step runs its real entry point in dry-run form (pytest --collect-only of the GPU
tests, doctor, each benchmark's --dry-run through the Triton interpreter, the e2e client against a
real CPU SGLang server with tiny models) and the bundle holds what a device call brings back."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
STEPS = ["doctor", "gpu_tests", "bench_tree_ops", "bench_fp8_moe", "bench_tree_attention", "bench_penalty_fixup",
         "bench_e2e"]


def session(out, *args, timeout=1800):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("TRITON_INTERPRET", None)  # the script sets it
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    out = tmp_path_factory.mktemp("session")
    proc = session(out)
    return proc, out


def test_dry_run_passes_and_returns_three_files(dry):
    proc, out = dry
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["gpu_session.json", "gpu_session.md", "gpu_session.tar.gz"]  # <= 8 back


def test_every_step_ran_its_real_entry_point(dry):
    _, out = dry
    s = json.loads((out / "gpu_session.json").read_text())
    assert s["mode"] == "dry-run" and s["failed_steps"] == []
    assert [x["step"] for x in s["steps"]] == STEPS
    assert all(x["exit"] == 0 and not x["timed_out"] for x in s["steps"])
    assert {x["step"]: x["checks_ok"] for x in s["steps"]} == {
        "doctor": None, "gpu_tests": None, "bench_tree_ops": True, "bench_fp8_moe": True,
        "bench_tree_attention": True, "bench_penalty_fixup": True, "bench_e2e": True}
    r = s["results"]
    assert r["bench_tree_ops"]["mode"] == "dry-run" and r["bench_tree_ops"]["cases"]
    assert r["bench_fp8_moe"]["all_ok"] and r["bench_tree_attention"]["all_equal"]
    e2e = r["bench_e2e"]
    assert e2e["mode"] == "dry-run" and e2e["ok"] and "partial" not in e2e
    (srv,) = e2e["servers"]
    assert srv["server"] == "eagle3" and srv["boot_s"] > 0
    assert [run["batch"] for run in srv["runs"]] == [1, 2] and all(run["tokens"] > 0 for run in srv["runs"])
    assert srv["aux_capture"]["agree"] is True and "TARGET_VERIFY" in srv["aux_capture"]["modes"]
    assert len(e2e["gpu_args_parsed"]) == 2 and "--speculative-eagle-topk 4" in e2e["gpu_args_parsed"][1]
    assert s["host"]["modules"]["sglang"][0].isdigit()


def test_bundle_holds_logs_and_tables(dry):
    _, out = dry
    md = (out / "gpu_session.md").read_text()
    assert "| step | exit | s | limit s | checks |" in md
    for name in STEPS[2:]:
        assert f"## {name}" in md
    assert "| op | batch | topk |" in md and "| server | boot s | B | tok/s |" in md
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        names = set(tar.getnames())
    for name in STEPS:
        assert f"gpu_session/{name}.log" in names
    assert {"gpu_session/env.json", "gpu_session/steps.tsv", "gpu_session/server_eagle3.log",
            "gpu_session/bench_e2e.json"} <= names
    assert "collected" in _member(out, "gpu_tests.log") or "tests collected" in _member(out, "gpu_tests.log")


def _member(out, name):
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        return tar.extractfile(f"gpu_session/{name}").read().decode()


def test_a_benchmark_cut_short_still_reports_its_cases(dry, tmp_path):
    """What a time limit leaves: the log without the JSON file; the bundle rebuilds the cases."""
    _, out = dry
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp_path)
    work = tmp_path / "gpu_session"
    full = json.loads((work / "bench_tree_ops.json").read_text())["cases"]
    (work / "bench_tree_ops.json").unlink()
    steps = (work / "steps.tsv").read_text().replace("bench_tree_ops\t0\t", "bench_tree_ops\t124\t")
    (work / "steps.tsv").write_text(steps)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "bundle", str(work),
                           str(tmp_path / "again"), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1  # a timed-out step fails the session
    s = json.loads((tmp_path / "again" / "gpu_session.json").read_text())
    assert s["failed_steps"] == ["bench_tree_ops"]
    assert s["results"]["bench_tree_ops"] == {"partial": True, "cases": full}
    assert "cut short by its time limit" in (tmp_path / "again" / "gpu_session.md").read_text()


def test_arguments_and_the_budget(tmp_path):
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "--parts" in usage.stdout and "--dry-run" in usage.stdout
    # a spent budget skips the remaining steps, and the session says it failed
    proc = session(tmp_path, "--budget", "12", timeout=300)
    s = json.loads((tmp_path / "gpu_session.json").read_text())
    assert proc.returncode == 1
    skipped = [x["step"] for x in s["steps"] if x["exit"] == "skipped"]
    assert skipped and skipped == STEPS[len(STEPS) - len(skipped):]
