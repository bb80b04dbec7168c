"""sglang:eagle3_* on a real server's /metrics, scraped with prometheus-client, against SGLang's
own per-request counts (meta_info of the native /generate) for the same requests."""

import json
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server import Server
from sglang_eagle3_ext.acceptance import from_requests

PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NUM_DRAFT_TOKENS = 4  # cpu_defaults.EAGLE3_ARGS: chain of 3 + the verified root
SELFCHECK_ENV = {"SGLANG_EAGLE3_EXT_SELFCHECK": "warn", "SGLANG_EAGLE3_EXT_SELFCHECK_TOKENS": "8"}


def scrape(server) -> dict:
    """{(sample name, position or le label or None): value} summed over the other labels."""
    out = {}
    for family in text_string_to_metric_families(server.get("/metrics")):
        for s in family.samples:
            if "eagle3" in s.name or s.name.startswith("sglang:spec_verify_calls"):
                key = (s.name, s.labels.get("position", s.labels.get("le")))
                out[key] = out.get(key, 0.0) + s.value
    return out


def generate(url, prompts, max_new_tokens):
    body = {"text": prompts, "sampling_params": {"temperature": 0, "max_new_tokens": max_new_tokens}}
    req = urllib.request.Request(url + "/generate", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return [o["meta_info"] for o in json.loads(r.read())]


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "eagle3.log"
    with Server(models["bigram_target"], models["agreeing_draft"], log_path=log, env=SELFCHECK_ENV) as s:
        before = scrape(s)
        metas = generate(s.url, PROMPTS, 16)
        after = scrape(s)
        info = json.loads(s.get("/get_server_info"))
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return dict(before=before, after=after, delta=delta, metas=metas, info=info, log=log.read_text())


def test_counts_match_sglangs_own_per_request_counts(served):
    d, metas = served["delta"], served["metas"]
    steps = sum(m["spec_verify_ct"] for m in metas)
    assert steps > 0
    assert d[("sglang:eagle3_verify_steps_total", None)] == steps
    assert d[("sglang:eagle3_accepted_tokens_total", None)] == sum(m["spec_num_correct_drafts"] for m in metas)
    assert d[("sglang:eagle3_draft_tokens_total", None)] == sum(m["spec_num_proposed_drafts"] for m in metas)
    assert d[("sglang:eagle3_draft_tokens_total", None)] == steps * (NUM_DRAFT_TOKENS - 1)
    # SGLang's own counter (tokenizer side, per finished request) agrees too.
    assert d[("sglang:spec_verify_calls_total", None)] == steps


def test_accept_length_matches_sglang(served):
    d, metas = served["delta"], served["metas"]
    steps = d[("sglang:eagle3_verify_steps_total", None)]
    ours = d[("sglang:eagle3_accept_length_sum", None)] / d[("sglang:eagle3_accept_length_count", None)]
    assert d[("sglang:eagle3_accept_length_count", None)] == steps
    assert ours == pytest.approx(1 + d[("sglang:eagle3_accepted_tokens_total", None)] / steps)
    # SGLang's meta_info accept length is completion_tokens / verify steps: it also counts the
    # prefill's token and drops a final step's tokens past max_new_tokens, hence approx.
    sglang = sum(m["completion_tokens"] for m in metas) / sum(m["spec_verify_ct"] for m in metas)
    assert ours == pytest.approx(sglang, abs=0.15)
    assert ours >= 1.8  # the agreeing draft's first proposal is always right
    # What the demo and the self-check print for the same requests is the number on /metrics.
    assert from_requests(metas, NUM_DRAFT_TOKENS)["accept_length"] == pytest.approx(ours)


def test_position_acceptance_sums_to_accepted_tokens(served):
    d = served["delta"]
    positions = {int(k[1]): v for k, v in d.items()
                 if k[0] == "sglang:eagle3_position_accepted_total"}
    assert sorted(positions) == [1, 2, 3]  # k = 1..speculative_num_steps, zeros included
    assert sum(positions.values()) == d[("sglang:eagle3_accepted_tokens_total", None)]
    assert positions[1] >= positions[2] >= positions[3]  # a chain accepts a prefix
    assert positions[1] == d[("sglang:eagle3_verify_steps_total", None)]  # first proposal always right
    # the accept-length histogram says the same: position k accepted <=> accept length > k
    count = d[("sglang:eagle3_accept_length_count", None)]
    for k, v in positions.items():
        assert v == count - d[("sglang:eagle3_accept_length_bucket", f"{float(k)}")]


def test_accept_rate_gauge_and_step_times(served):
    a = served["after"]
    steps = a[("sglang:eagle3_accept_length_count", None)]
    assert steps < 256  # all of them inside the default live-guard window
    mean = a[("sglang:eagle3_accept_length_sum", None)] / steps
    assert a[("sglang:eagle3_accept_rate", None)] == pytest.approx(mean / NUM_DRAFT_TOKENS)
    n = a[("sglang:eagle3_verify_seconds_count", None)]
    assert n > 0 and a[("sglang:eagle3_draft_seconds_count", None)] == n
    assert a[("sglang:eagle3_verify_seconds_sum", None)] > 0 and a[("sglang:eagle3_draft_seconds_sum", None)] > 0
    assert a[("sglang:eagle3_break_even_accept_length", None)] > 1


def test_selfcheck_passes_for_a_good_pairing(served):
    result = served["info"]["internal_states"][0]["eagle3_ext"]["selfcheck"]
    assert result["status"] == "passed", result
    assert result["accept_length"] >= 1.8
    assert "sglang-eagle3-ext: self-check passed: accept length" in served["log"]
    assert "SELF-CHECK FAILED" not in served["log"]
    a = served["after"]
    assert a[("sglang:eagle3_selfcheck_passed", None)] == 1
    assert a[("sglang:eagle3_selfcheck_accept_length", None)] == pytest.approx(result["accept_length"])
