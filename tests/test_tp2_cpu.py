"""EAGLE-3 served at --tp 2 on a CPU (two scheduler processes over gloo): greedy output, the plugin
in both rank processes, metrics counted once, the self-check run once.

Two real servers, module-scoped (one start each):
* dense: the bigram Qwen2 target + its agreeing draft (accept length ~2, so accepted drafts, not
  only bonus tokens, cross the ranks), self-check on;
* MoE: a random GLM-4.7-style Glm4Moe target (GQA, partial rotary, 8 experts, a shared expert;
  every weight random, so attention, experts and lm_head really are split) + a random draft,
  with --enable-metrics-for-all-schedulers (every rank exports SGLang's scheduler metrics).
Baseline: transformers' greedy on the same folder (SGLang at TP 1 equals it, tests/test_archs_cpu.py).
SGLang needs two environment settings for TP on a CPU, plugin or not: cpu_defaults.cpu_tp_env.
"""

import json
import re
import urllib.request

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hf_reference import hf_greedy
from server import Server
from sglang_eagle3_ext.cpu_defaults import cpu_tp_env
from sglang_eagle3_ext.tiny_archs import build_target
from sglang_eagle3_ext.tiny_models import build_eagle3_draft

TP = 2
PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NEW_TOKENS = 12
SELFCHECK_PROBES = 4  # selfcheck.PROBES
# The plugin's work on a rank: these must have applied in every rank process.
RANK_PATCHES = ("cpu_rotary", "tree_ops", "server_info", "spec_metrics")
# one capture patch per target class; the one for the served architecture must be applied
CAPTURE = {"dense": "eagle3_capture.Qwen2ForCausalLM", "moe": "eagle3_capture.Glm4MoeForCausalLM"}

SERVERS = {
    "dense": dict(env={"SGLANG_EAGLE3_EXT_SELFCHECK": "warn", "SGLANG_EAGLE3_EXT_SELFCHECK_TOKENS": "8"},
                  extra=[]),
    "moe": dict(env={}, extra=["--enable-metrics-for-all-schedulers"]),
}


def scrape(server) -> list:
    return [s for family in text_string_to_metric_families(server.get("/metrics"))
            for s in family.samples]


def total(samples, name) -> float:
    return sum(s.value for s in samples if s.name == name)


def generate(url) -> list:
    body = {"text": PROMPTS, "sampling_params": {"temperature": 0, "max_new_tokens": NEW_TOKENS,
                                                 "ignore_eos": True}}
    req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def build(kind, root) -> tuple:
    if kind == "dense":
        from sglang_eagle3_ext.tiny_models import build_qwen2_target

        target, draft = str(root / "qwen2-bigram"), str(root / "qwen2-bigram-eagle3")
        build_qwen2_target(target, kind="bigram")
        build_eagle3_draft(draft, target, kind="agreeing")
    else:
        target, draft = str(root / "glm4-moe"), str(root / "glm4-moe-eagle3")
        build_target("glm4_moe", target)
        build_eagle3_draft(draft, target, kind="random")
    return target, draft


@pytest.fixture(scope="module", params=sorted(SERVERS))
def served(request, tmp_path_factory):
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    target, draft = build(kind, root)
    expected = hf_greedy(target, PROMPTS, NEW_TOKENS)
    cfg = SERVERS[kind]
    log = root / "server.log"
    with Server(target, draft, log_path=log, extra=["--tp", str(TP), *cfg["extra"]],
                env={**cpu_tp_env(TP), **cfg["env"]}) as s:
        before = scrape(s)
        outs = generate(s.url)
        after = scrape(s)
        info = json.loads(s.get("/get_server_info"))
        # SGLang titles each scheduler process by its rank (setproctitle pads the title)
        titles = {p.pid: " ".join(p.cmdline()).strip()
                  for p in psutil.Process(s.proc.pid).children(recursive=True)}
    print(f"\n{kind}: TP {TP} server healthy after {s.startup_s:.0f} s")
    return dict(kind=kind, expected=expected, outs=outs, before=before, after=after, info=info,
                titles=titles, log=log.read_text())


def test_greedy_output_equals_tp1_baseline(served):
    assert [o["output_ids"] for o in served["outs"]] == served["expected"]
    assert all(o["meta_info"]["spec_verify_ct"] > 0 for o in served["outs"])  # EAGLE did the decoding


def test_sglang_answers_server_info_from_tp_rank_0_only(served):
    # Why the plugin gathers the ranks itself: one internal state per DP group, not per TP rank.
    states = served["info"]["internal_states"]
    assert len(states) == 1
    assert served["titles"][states[0]["eagle3_ext"]["pid"]] == "sglang::scheduler_TP0"


def test_plugin_applied_in_both_rank_processes(served):
    ranks = served["info"]["internal_states"][0]["eagle3_ext"]["tp_ranks"]
    assert sorted(ranks) == [str(i) for i in range(TP)], ranks
    for tp_rank, state in ranks.items():
        assert "pid" in state, state  # a rank that did not report has only a status
        # The record comes from that rank's own scheduler process.
        assert served["titles"].get(state["pid"]) == f"sglang::scheduler_TP{tp_rank}", served["titles"]
        for name in (*RANK_PATCHES, CAPTURE[served["kind"]]):
            assert state["patches"].get(name) == "applied", (tp_rank, name, state["patches"])
        # ...and that rank ran our capture in both the prefill and the verify forwards.
        assert {"EXTEND", "TARGET_VERIFY"} <= set(state["aux_capture"]), state["aux_capture"]
    assert ranks["0"]["patches"] == ranks["1"]["patches"]


def test_eagle3_metrics_counted_once(served):
    before, after, outs = served["before"], served["after"], served["outs"]
    ours = [s for s in after if s.name.startswith("sglang:eagle3_") and "selfcheck" not in s.name]
    assert ours
    assert {s.labels.get("tp_rank") for s in ours} == {"0"}  # one rank exports them
    # The same totals as SGLang's own counter (tokenizer side, once per finished request) ...
    assert total(after, "sglang:eagle3_verify_steps_total") == total(after, "sglang:spec_verify_calls_total")
    # ... and as the requests' own meta_info.
    steps = sum(o["meta_info"]["spec_verify_ct"] for o in outs)
    assert (total(after, "sglang:eagle3_verify_steps_total")
            - total(before, "sglang:eagle3_verify_steps_total")) == steps
    assert (total(after, "sglang:eagle3_accepted_tokens_total")
            - total(before, "sglang:eagle3_accepted_tokens_total")) == sum(
        o["meta_info"]["spec_num_correct_drafts"] for o in outs)
    if "--enable-metrics-for-all-schedulers" in SERVERS[served["kind"]]["extra"]:
        # not vacuous: rank 1 does export SGLang's scheduler metrics on this server
        assert any(s.labels.get("tp_rank") == "1" and s.name == "sglang:max_total_num_tokens"
                   for s in after)


def test_dense_accepts_drafts_across_ranks(served):
    if served["kind"] != "dense":
        pytest.skip("the agreeing draft is the dense server's")
    outs = served["outs"]
    accepted = sum(o["meta_info"]["spec_num_correct_drafts"] for o in outs)
    assert 1 + accepted / sum(o["meta_info"]["spec_verify_ct"] for o in outs) >= 1.8


def test_selfcheck_runs_once(served):
    selfcheck = served["info"]["internal_states"][0]["eagle3_ext"]["selfcheck"]
    if served["kind"] != "dense":
        assert selfcheck["status"] == "off"
        return
    assert selfcheck["status"] == "passed" and selfcheck["probes"] == SELFCHECK_PROBES, selfcheck
    assert len(re.findall(r"sglang-eagle3-ext: self-check (passed|FAILED)", served["log"], re.I)) == 1
    # SGLang's request counter before our requests: its warmup request + one set of probes.
    assert total(served["before"], "sglang:num_requests_total") == 1 + SELFCHECK_PROBES
    assert len([s for s in served["after"] if s.name == "sglang:eagle3_selfcheck_passed"]) == 1


def test_a_rank_without_the_plugin_reads_as_no_report():
    """rank_states reads a peer's entry from a real torch.distributed store: an entry from an earlier
    request, or none at all, gives a status after WAIT_S instead of blocking the scheduler."""
    import time

    from torch.distributed import HashStore

    from sglang_eagle3_ext import rank_states

    store = HashStore()
    key = rank_states.KEY.format(1)
    deadline = time.monotonic() + 0.2
    assert "no report" in rank_states._read(store, key, 1, deadline)["status"]
    store.set(key, json.dumps({"pid": 7, "call": 1}))
    assert "no report" in rank_states._read(store, key, 2, time.monotonic() + 0.2)["status"]  # stale
    assert rank_states._read(store, key, 1, time.monotonic() + 0.2) == {"pid": 7, "call": 1}
