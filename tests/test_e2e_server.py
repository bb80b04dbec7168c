"""`python -m sglang.launch_server` with EAGLE-3 on 127.0.0.1, driven by the real `openai` client:
answers equal the baseline server's for every API and mode, streamed logprobs one entry per token."""

import json
import re

import openai
import pytest

import logprob_answers as lp
from server import Server

PROMPTS = ["The capital of France is", "def add(a, b):"]
CHATS = [[{"role": "user", "content": "hello there!"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "One plus one is"}]]
MAX_TOKENS = 12


def ask(client, kind, item, stream):
    params = dict(model="default", max_tokens=MAX_TOKENS, temperature=0, stream=stream)
    if kind == "completion":
        resp = client.completions.create(prompt=item, **params)
        if stream:
            return "".join(c.choices[0].text for c in resp if c.choices)
        return resp.choices[0].text
    resp = client.chat.completions.create(messages=item, **params)
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in resp if c.choices)
    return resp.choices[0].message.content


def all_answers(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=300)
    return {(kind, i, stream): ask(client, kind, item, stream)
            for kind, items in (("completion", PROMPTS), ("chat", CHATS))
            for i, item in enumerate(items) for stream in (False, True)}


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    with Server(models["bigram_target"], log_path=logs / "base.log") as base:
        base_answers = all_answers(base.url)
        base_logprobs = lp.collect(base.url)
    with Server(models["bigram_target"], models["agreeing_draft"], log_path=logs / "eagle3.log") as spec:
        spec_answers = all_answers(spec.url)
        metrics = spec.get("/metrics")  # before the logprob requests: the counts of the matrix only
        info = json.loads(spec.get("/get_server_info"))
        server_pid = spec.proc.pid
        spec_logprobs = lp.collect(spec.url)
    return dict(base=base_answers, spec=spec_answers, metrics=metrics, info=info, server_pid=server_pid,
                logprobs={"baseline": base_logprobs, "eagle3": spec_logprobs})


def test_eagle3_server_answers_equal_baseline_for_every_api_and_mode(served):
    assert served["spec"] == served["base"]
    assert all(served["base"].values())  # non-empty text everywhere


def test_streaming_equals_non_streaming(served):
    for (kind, i, stream), text in served["spec"].items():
        if stream:
            assert text == served["spec"][(kind, i, False)]


def test_server_reports_accept_length_above_one(served):
    m = re.search(r'^sglang:spec_accept_length\{[^}]*\} ([0-9.]+)$', served["metrics"], re.M)
    assert m, served["metrics"][:2000]
    assert float(m.group(1)) >= 1.8


def test_plugin_state_comes_from_the_scheduler_process(served):
    state = served["info"]["internal_states"][0]["eagle3_ext"]
    assert state["pid"] != served["server_pid"]  # not the launcher/HTTP process
    assert list(state["tp_ranks"]) == ["0"] and state["tp_ranks"]["0"]["pid"] == state["pid"]  # TP 1
    assert state["patches"]["tree_ops"] == "applied"


def test_selfcheck_off_switch_is_reported(served):
    # tests/conftest.py sets SGLANG_EAGLE3_EXT_SELFCHECK=off for the servers it does not test
    assert served["info"]["internal_states"][0]["eagle3_ext"]["selfcheck"]["status"] == "off"


# Streamed logprobs: one entry per generated token, equal to the non-streamed response's, for chat
# and completions, on both servers (tests/logprob_answers.py says what the cases hold).

@pytest.mark.parametrize("server", ["baseline", "eagle3"])
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_streamed_logprobs_are_one_entry_per_token_equal_to_non_streamed(served, server, kind):
    bad = {case: (lp.mismatches(a["whole"], a["streamed"]), len(a["whole"]), len(a["streamed"]), a["chunks"])
           for (k, case), a in served["logprobs"][server].items() if k == kind}
    assert all(n == 0 for n, *_ in bad.values()), bad  # case: (mismatched, non-streamed, streamed, chunks)


def test_the_cases_hold_empty_text_steps_and_multi_token_steps(served):
    """The test above can fail: the answers hold what drops entries upstream."""
    base, spec = served["logprobs"]["baseline"], served["logprobs"]["eagle3"]
    for server in (base, spec):
        for (kind, case), a in server.items():
            assert a["whole"], (kind, case)
    eos = base[("chat", "eos")]
    assert eos["finish"] == "stop" and base[("chat", "length")]["finish"] == "length"
    # single tokens that are not UTF-8 on their own: their text is held back for a later step
    assert any(b and not lp.is_utf8(bytes(b)) for _, b, _, _ in eos["whole"])
    # a step whose text delta is empty while it generated tokens (completions send it anyway)
    assert any(text == "" and n > 0 for text, n in base[("completion", "eos")]["chunks"])
    # EAGLE-3 steps carry several tokens
    assert max(n for _, n in spec[("completion", "eos")]["chunks"]) > 1


def test_eagle3_answers_with_the_baseline_tokens(served):
    for key, a in served["logprobs"]["baseline"].items():
        assert [e[0] for e in served["logprobs"]["eagle3"][key]["whole"]] == [e[0] for e in a["whole"]], key
