"""The benchmark harness against real tiny servers: the protocol scaled down by flags, one
baseline server, then one EAGLE3 server started through the launch CLI with a preset and a
simulated accept length; the harness's numbers must equal the servers' own counters."""

import json
import re
import subprocess
import sys

import pytest

from server import STARTUP_S, Server, server_env

from sglang_eagle3_ext.bench import metrics
from sglang_eagle3_ext.bench.__main__ import main as bench_main
from sglang_eagle3_ext.bench.prompts import PromptFileError, load_prompts
from sglang_eagle3_ext.bench.runner import percentiles
from sglang_eagle3_ext.bench.loopback_server import LoopbackServer
from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, as_cli

MAX_TOKENS = 16
SIMULATED = 3.0
PROTOCOL = ["--batch-sizes", "1,2", "--warmup", "1", "--measured", "3", "--max-tokens", str(MAX_TOKENS),
            "--ignore-eos", "--no-progress"]
SHORT_PROMPTS = [{"prompt": "The capital of France is"}, {"prompt": "def add(a, b):"},
                 {"messages": [{"role": "user", "content": "One plus one is"}]},
                 {"messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "hello there!"}]}]


class LaunchedServer(LoopbackServer):
    """A server started by `python -m sglang_eagle3_ext.launch PRESET ...` (it execs launch_server)."""

    def __init__(self, argv, log_path):
        super().__init__(argv, log_path, server_env(), STARTUP_S, cwd="/")


def measure(server, prompts_file, out_json, extra=()):
    """One harness run through its CLI, bracketed by our own scrapes of the server's counters."""
    before = metrics.scrape(server.url)
    r = subprocess.run([sys.executable, "-m", "sglang_eagle3_ext.bench", "--url", server.url,
                        "--prompts", str(prompts_file), "--out-json", str(out_json), *PROTOCOL, *extra],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    after = metrics.scrape(server.url)
    return {"result": json.loads(out_json.read_text()), "counters": metrics.delta(after, before),
            "stdout": r.stdout, "stderr": r.stderr}


@pytest.fixture(scope="module")
def benched(models, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    prompts = tmp / "short.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in SHORT_PROMPTS))
    with Server(models["bigram_target"], log_path=tmp / "base.log") as base:
        baseline = measure(base, prompts, tmp / "base.json")
    launch = [sys.executable, "-m", "sglang_eagle3_ext.launch", "qwen25-7b-throughput",
              "--model-path", models["bigram_target"], "--draft-path", models["agreeing_draft"],
              "--no-check", "--simulate-accept-length", str(SIMULATED),
              *as_cli(CPU_ENGINE_ARGS)]  # the CPU flags come last: they override the GPU preset's
    with LaunchedServer(launch, tmp / "eagle3.log") as spec:
        eagle3 = measure(spec, prompts, tmp / "eagle3.json", ["--simulate-accept-length", str(SIMULATED)])
    combined = tmp / "table"
    bench_main(["--from-json", str(tmp / "base.json"), str(tmp / "eagle3.json"),
                "--out-md", f"{combined}.md", "--out-json", f"{combined}.json"])
    return dict(baseline=baseline, eagle3=eagle3, md=(tmp / "table.md").read_text(),
                combined=json.loads((tmp / "table.json").read_text()), tmp=tmp)


def test_output_tokens_equal_the_servers_generation_counter(benched):
    for name in ("baseline", "eagle3"):
        run = benched[name]["result"]["runs"][0]
        assert run["label"] == name  # the label comes from the server's own configuration
        total = 0
        for phase in run["phases"]:
            assert phase["measured_requests"] == 3 and phase["warmup_requests"] == 1
            assert [r["completion_tokens"] for r in phase["requests"]] == [MAX_TOKENS] * 3
            assert phase["output_tokens"] == phase["server_generation_tokens"] == 3 * MAX_TOKENS
            assert phase["throughput_tok_s"] == pytest.approx(phase["output_tokens"] / phase["wall_s"])
            total += phase["output_tokens"] + phase["warmup"]["output_tokens"]
        assert total == benched[name]["counters"]["generated"]  # our own scrape, whole run


def test_accept_length_is_the_servers_verify_derived_value(benched):
    run = benched["eagle3"]["result"]["runs"][0]
    assert run["server"]["speculative_num_draft_tokens"] == 4  # the preset's chain, from the server
    verify_steps = 0
    for phase in run["phases"]:
        acc = phase["acceptance"]
        c = acc["counters"]
        if acc["source"] == "eagle3_ext":  # the plugin's own counters, once they exist
            assert acc["accept_length"] == pytest.approx(1 + c["accepted"] / c["steps"])
        else:  # SGLang's: one token per request from prefill, the rest from verify steps
            assert acc["source"] == "sglang" and c["requests"] == 3
            assert acc["accept_length"] == pytest.approx((c["generated"] - c["requests"]) / c["verify"])
            assert acc["tokens_per_verify"] == pytest.approx(c["generated"] / c["verify"])
        assert acc["accept_rate"] == pytest.approx(acc["accept_length"] / 4)
        # SGLang honoured the env that launch set: 16 tokens = 1 from prefill + 5 steps x 3
        assert acc["accept_length"] == pytest.approx(SIMULATED, abs=0.1)
        verify_steps += c["verify"] + phase["warmup"]["server_counters"]["verify"]
    assert verify_steps == benched["eagle3"]["counters"]["verify"] > 0
    assert "warning" not in benched["eagle3"]["stderr"]
    for phase in benched["baseline"]["result"]["runs"][0]["phases"]:
        assert phase["acceptance"]["source"] is None
    assert "verify" not in benched["baseline"]["counters"] or benched["baseline"]["counters"]["verify"] == 0


def test_latency_percentiles_come_from_the_stream(benched):
    for name in ("baseline", "eagle3"):
        for phase in benched[name]["result"]["runs"][0]["phases"]:
            ttft, reqs = phase["ttft_ms"], phase["requests"]
            assert 0 < ttft["p50"] <= ttft["p90"] <= ttft["p99"]
            assert all(0 < r["ttft_ms"] < r["latency_ms"] for r in reqs)
            assert min(r["ttft_ms"] for r in reqs) <= ttft["p50"] <= max(r["ttft_ms"] for r in reqs)
    # Simulated acceptance emits a fixed token whose text may never complete a UTF-8 character,
    # so chunk gaps are checked on the baseline's real text.
    for phase in benched["baseline"]["result"]["runs"][0]["phases"]:
        assert phase["itl_ms"]["p50"] > 0 and phase["tpot_ms"]["p50"] > 0


def test_combined_table_compares_baseline_and_eagle3_per_batch_size(benched):
    md, combined = benched["md"], benched["combined"]
    assert "| B | Baseline tok/s | EAGLE3 tok/s | Speedup | Accept Rate | Accept Length |" in md
    assert md.startswith("**Simulated acceptance**") and "SGLANG_SIMULATE_ACC_LEN=3" in md
    rows = {r["batch_size"]: r for r in combined["table"]}
    assert set(rows) == {1, 2}
    for b, row in rows.items():
        base = next(p for p in combined["runs"][0]["phases"] if p["batch_size"] == b)
        assert row["baseline_tok_s"] == base["throughput_tok_s"]
        assert row["speedup"] == pytest.approx(row["eagle3_tok_s"] / row["baseline_tok_s"])
        line = re.search(rf"^\| {b} \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+)x \|", md, re.M)
        assert line and float(line.group(3)) == pytest.approx(row["speedup"], abs=0.006)
        assert row["simulated_accept_length"] == SIMULATED


def test_plot_is_written_or_skipped_with_a_reason(benched):
    import importlib.util

    from sglang_eagle3_ext.bench.report import plot

    path = benched["tmp"] / "table.png"
    message = plot(benched["combined"], str(path))
    if importlib.util.find_spec("matplotlib"):
        assert path.stat().st_size > 0 and "written" in message
    else:
        assert "matplotlib is not installed" in message and not path.exists()


# ---------------------------------------------------------------- no server needed

def test_prompt_files_jsonl_sharegpt_and_errors(tmp_path):
    assert len(load_prompts()) >= 80
    assert {p["category"] for p in load_prompts()} >= {"chat", "code", "math", "summarization"}
    share = tmp_path / "sharegpt.json"
    share.write_text(json.dumps([{"conversations": [
        {"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi?"},
        {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "later turn"}]}]))
    assert load_prompts(str(share))[0]["messages"] == [{"role": "system", "content": "Be kind."},
                                                        {"role": "user", "content": "Hi?"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    with pytest.raises(PromptFileError, match=r"bad.jsonl:2: expected an object with a non-empty 'prompt'"):
        load_prompts(str(bad))


def test_acceptance_prefers_the_plugins_counters_when_exported():
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    reg = CollectorRegistry()
    for name, value in (("eagle3_verify_steps", 10), ("eagle3_accepted_tokens", 17),
                        ("eagle3_draft_tokens", 30), ("spec_verify_calls", 10), ("generation_tokens", 28)):
        c = Counter(f"sglang:{name}", "test", ["tp_rank"], registry=reg)
        c.labels(tp_rank="0").inc(value / 2)
        c.labels(tp_rank="1").inc(value / 2)  # summed over label sets
    now = metrics.parse(generate_latest(reg).decode())
    acc = metrics.acceptance(metrics.delta(now, {}), num_draft_tokens=4)
    assert acc["source"] == "eagle3_ext"
    assert acc["accept_length"] == pytest.approx(2.7) and acc["draft_accept_rate"] == pytest.approx(17 / 30)
    acc = metrics.acceptance({"verify": 10, "generated": 28, "requests": 2}, num_draft_tokens=4)
    assert acc["source"] == "sglang" and acc["accept_length"] == pytest.approx(2.6)
    assert acc["tokens_per_verify"] == pytest.approx(2.8) and acc["draft_accept_rate"] == pytest.approx(16 / 30)


def test_percentiles_nearest_rank():
    p = percentiles([0.001 * i for i in range(1, 101)])
    assert (p["p50"], p["p90"], p["p99"]) == pytest.approx((50, 90, 99))
