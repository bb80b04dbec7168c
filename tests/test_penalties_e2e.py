"""EAGLE-3 output equals the baseline's for every sampling parameter: penalties, min_tokens, logit_bias.

Real `sglang.launch_server` processes on CPU: one baseline, one EAGLE-3 chain (topk 1), one EAGLE-3
tree (topk 4), greedy, driven by the real `openai` client; every request of the matrix is sent to each,
many at a time, so penalized and plain requests share batches. Token ids (where the API returns them),
text and finish_reason must equal the baseline's.

The target is the tiny bigram Qwen2 (greedy next token = g(current token); the agreeing draft
proposes g: accept length ~2) with a generation_config.json holding repetition_penalty 1.05, as
Qwen2.5-7B-Instruct ships: SGLang's default `--sampling-defaults model` applies it to every request
that sets none. Completion prompts are token ids chosen on g: one whose continuation reaches EOS
after three tokens (min_tokens bites), one on a cycle of g (the output repeats at once: every penalty
bites, and the top-2 margins are ~0.4 logits, so even repetition_penalty 1.05 changes choices).
"""

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from server import Server

MAX_TOKENS = 12
CYCLE, NEAR_EOS, CHAT, CHAT_CYCLE = "cycle", "near_eos", "chat", "chat_cycle"  # the prompts (requests())


def cases(ids):
    """name: (sampling parameters, max_tokens, [(prompt, stream), ...]). Each parameter on the prompts
    where it bites (penalties on the cycles, min_tokens near EOS); streaming for some."""
    no_rep = dict(repetition_penalty=1.0)  # the other penalties alone, without the target's default
    bias = {str(ids["cycle"][1]): -100, str(ids["cycle"][2]): 0.5}
    out = {
        # only temperature 0: chat takes the target's repetition_penalty 1.05 (completions do not)
        "generation_config": ({}, [(CHAT_CYCLE, False), (CHAT_CYCLE, True), (CYCLE, False)]),
        "plain": (no_rep, [(CYCLE, False), (NEAR_EOS, False), (CHAT, False), (CHAT_CYCLE, False)]),
        "repetition_1.05": (dict(repetition_penalty=1.05), [(CYCLE, False)]),
        "repetition_1.3": (dict(repetition_penalty=1.3), [(CYCLE, False), (CYCLE, True), (CHAT_CYCLE, False)]),
        "frequency_0.5": (dict(no_rep, frequency_penalty=0.5), [(CYCLE, False)]),
        "presence_1.0": (dict(no_rep, presence_penalty=1.0), [(CYCLE, False), (CHAT_CYCLE, False)]),
        "logit_bias": (dict(no_rep, logit_bias=bias), [(CYCLE, False)]),
        "logit_bias_presence": (dict(logit_bias=bias, presence_penalty=1.0), [(CYCLE, False)]),
        "min_tokens_6_stop_token_ids": (dict(no_rep, min_tokens=6, stop_token_ids=[ids["stop_token"]]),
                                        [(NEAR_EOS, False)]),
        "all": (dict(repetition_penalty=1.3, frequency_penalty=0.5, presence_penalty=1.0, min_tokens=5,
                     logit_bias={str(ids["cycle"][2]): 0.5}), [(CYCLE, False), (NEAR_EOS, False)]),
    }
    out = {name: (params, MAX_TOKENS, where) for name, (params, where) in out.items()}
    for m, ns in ((5, (5, 9)), (10, (10, 14))):  # max_tokens >= min_tokens (else SGLang answers 400)
        for n in ns:
            where = [(NEAR_EOS, False)] + ([(NEAR_EOS, True)] if n == max(ns) else [])
            where += [(CHAT, False), (CHAT, True)] if (m, n) == (10, 14) else []
            out[f"min_tokens_{m}_max_{n}"] = (dict(no_rep, min_tokens=m), n, where)
    return out


EXTRA_BODY = ("min_tokens", "repetition_penalty", "stop_token_ids")  # SGLang's, outside the OpenAI schema
TOPK_TREE = ("--speculative-eagle-topk", "4", "--speculative-num-draft-tokens", "8")
# The reference is SGLang's synchronous scheduler, which counts each token before the next is
# sampled. Its overlap scheduler (the non-speculative default) counts the prompt's last token on the
# first decode step and each token one step late, depending on timing: the same penalized request
# can come out differently twice. EAGLE on CPU runs synchronously (SGLang forces it).
BASELINE_ARGS = ("--disable-overlap-schedule",)


def build_target(models, root):
    """The bigram target with a generation_config.json (repetition_penalty 1.05)."""
    target = os.path.join(root, "qwen2-tiny-bigram-penalties")
    shutil.copytree(models["bigram_target"], target)
    with open(os.path.join(target, "generation_config.json"), "w") as f:
        json.dump({"repetition_penalty": 1.05}, f)
    return target


def prompt_ids(models):
    from sglang_eagle3_ext.tiny_models import bigram_prompts

    ids = bigram_prompts(models["bigram_target"])
    if ids is None:
        pytest.skip("this bigram target has no short orbit to EOS or no cycle without it")
    return ids


def requests(models):
    """(case, prompt, stream, (kind, prompt, extra body), sampling parameters, max_tokens) of every request.

    CHAT reaches EOS after 8 tokens; CHAT_CYCLE continues an assistant message ending in "|" (token 96
    here, on a cycle of g) with continue_final_message."""
    from transformers import AutoTokenizer

    ids = prompt_ids(models)
    user = {"role": "user", "content": "hello there!"}
    tail = AutoTokenizer.from_pretrained(models["bigram_target"]).decode([ids["cycle"][0]])
    prompts = {NEAR_EOS: ("completion", ids["near_eos"], {}),
               CYCLE: ("completion", [7, 11, ids["cycle"][0]], {}),
               CHAT: ("chat", [user], {}),
               CHAT_CYCLE: ("chat", [user, {"role": "assistant", "content": "hi" + tail}],
                            {"continue_final_message": True})}
    return [(case, prompt, stream, prompts[prompt], params, max_tokens)
            for case, (params, max_tokens, where) in cases(ids).items() for prompt, stream in where]


def ask(client, prompt, stream, params, max_tokens):
    kind, item, extra = prompt
    extra = dict(extra, **{k: v for k, v in params.items() if k in EXTRA_BODY})
    std = {k: v for k, v in params.items() if k not in EXTRA_BODY}
    kw = dict(model="default", max_tokens=max_tokens, temperature=0, stream=stream, **std)
    if kind == "completion":
        resp = client.completions.create(prompt=item, extra_body=dict(extra, return_token_ids=True), **kw)
        if not stream:
            c = resp.choices[0]
            return dict(text=c.text, ids=c.token_ids, finish=c.finish_reason)
        text, ids, finish = "", [], None
        for chunk in resp:
            for c in chunk.choices:
                text += c.text
                ids += getattr(c, "token_ids", None) or []
                finish = c.finish_reason or finish
        return dict(text=text, ids=ids, finish=finish)
    if not stream:
        resp = client.chat.completions.create(messages=item, extra_body=dict(extra, return_token_ids=True), **kw)
        c = resp.choices[0]
        return dict(text=c.message.content, ids=c.response_token_ids, finish=c.finish_reason)
    resp = client.chat.completions.create(messages=item, extra_body=extra, stream_options={"include_usage": True},
                                          **kw)
    text, finish, tokens = "", None, None
    for chunk in resp:
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return dict(text=text, ids=None, finish=finish, completion_tokens=tokens)  # no ids in chat chunks


def answers(url, matrix):
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=900)
    with ThreadPoolExecutor(12) as pool:  # concurrent: penalized and plain requests share batches
        futures = {(case, name, stream): pool.submit(ask, client, prompt, stream, params, max_tokens)
                   for case, name, stream, prompt, params, max_tokens in matrix}
        return {key: f.result() for key, f in futures.items()}


def differences(base, spec):
    return {key: (base[key], spec[key]) for key in base if spec[key] != base[key]}


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("penalties")
    target = build_target(models, str(root))
    matrix = requests(models)
    out = {}
    with Server(target, log_path=root / "base.log", extra=BASELINE_ARGS) as base:
        out["base"] = answers(base.url, matrix)
    for name, extra in (("topk1", ()), ("topk4", TOPK_TREE)):
        with Server(target, models["agreeing_draft"], log_path=root / f"{name}.log",
                    extra=extra) as spec:
            out[name] = answers(spec.url, matrix)
            out[f"{name}_metrics"] = spec.get("/metrics")
            out[f"{name}_info"] = json.loads(spec.get("/get_server_info"))
    return out


@pytest.mark.parametrize("tree", ["topk1", "topk4"])
def test_eagle3_equals_baseline_for_every_sampling_parameter(served, tree):
    diff = differences(served["base"], served[tree])
    assert not diff, f"{len(diff)} of {len(served['base'])} answers differ: " + "; ".join(
        f"{k}: base {b} eagle3 {s}" for k, (b, s) in list(diff.items())[:6])


def test_the_matrix_exercises_what_it_claims(served):
    base = served["base"]
    plain = {name: base[("plain", name, False)] for name in (CYCLE, NEAR_EOS, CHAT, CHAT_CYCLE)}
    # every parameter changes a greedy answer (one SGLang ignored would pass vacuously), the
    # target's default repetition_penalty 1.05 included; non-streamed answers all carry token ids
    assert all(a["ids"] for (_, _, stream), a in base.items() if not stream)
    changed = {case for (case, name, stream), a in base.items() if not stream and a["ids"] != plain[name]["ids"]}
    assert changed == {case for case, _, _ in base} - {"plain"}
    # completions take no generation_config defaults in this SGLang: there it is the plain answer
    assert base[("generation_config", CYCLE, False)] == plain[CYCLE]
    assert {base[k]["finish"] for k in base if k[0].startswith("min_tokens")} == {"stop", "length"}
    assert all(a["text"] for a in base.values())


def test_speculation_ran_with_the_patch(served):
    for tree in ("topk1", "topk4"):
        m = re.search(r'^sglang:spec_accept_length\{[^}]*\} ([0-9.]+)$', served[f"{tree}_metrics"], re.M)
        assert m and float(m.group(1)) > 1.2, (tree, m and m.group(1))
        state = served[f"{tree}_info"]["internal_states"][0]["eagle3_ext"]
        assert state["patches"]["eagle_sample.penalties"] == "applied", state["patches"]


def test_streaming_equals_non_streaming(served):
    for server in ("base", "topk1", "topk4"):
        got = served[server]
        for (case, name, stream), a in got.items():
            b = got.get((case, name, False))
            if stream and b is not None:
                assert (a["text"], a["finish"]) == (b["text"], b["finish"]), (server, case, name)
                if a["ids"] is not None:
                    assert a["ids"] == b["ids"], (server, case, name)
