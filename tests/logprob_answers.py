"""Logprob answers of a server, streamed and not, for chat and completions (test_e2e_server.py).

The tiny bigram target's greedy chat answer holds single-byte tokens that are incomplete UTF-8 on
their own (the detokenizer holds their text back: a step with an empty text delta) and ends with
EOS; under EAGLE-3 a step carries several tokens. Stopping on a string ends a step with no text.
"""

import math

import openai

CHATS = {  # the bigram answer after <|assistant|> is the same chain for every chat prompt
    "eos": dict(messages=[{"role": "user", "content": "hello there!"}], max_tokens=16),
    "stop_string": dict(messages=[{"role": "user", "content": "hello there!"}], max_tokens=16, stop=["7"]),
    "length": dict(messages=[{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "One plus one is"}], max_tokens=5),
}
COMPLETIONS = {
    "eos": dict(prompt="The capital of France is", max_tokens=16),
    "length": dict(prompt="hello", max_tokens=12),
}
TOP = 2
ATOL = 1e-4  # the same server recomputes a prompt through its prefix cache: float noise only


def chat_entry(e):
    return (e.token, tuple(e.bytes or ()), e.logprob,
            tuple((t.token, tuple(t.bytes or ()), t.logprob) for t in e.top_logprobs))


def chat(client, case):
    params = dict(model="default", temperature=0, logprobs=True, top_logprobs=TOP, **CHATS[case])
    r = client.chat.completions.create(**params)
    whole = [chat_entry(e) for e in r.choices[0].logprobs.content]
    streamed, chunks = [], []
    for c in client.chat.completions.create(stream=True, **params):
        if not c.choices:
            continue
        lp = c.choices[0].logprobs
        entries = [chat_entry(e) for e in lp.content] if lp and lp.content else []
        streamed += entries
        chunks.append((c.choices[0].delta.content, len(entries)))
    return dict(whole=whole, streamed=streamed, chunks=chunks, text=r.choices[0].message.content,
                finish=r.choices[0].finish_reason)


def completion_entries(lp):
    if lp is None:
        return []
    return [(t, v, tuple(sorted(top.items())) if top else ())
            for t, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True)]


def completion(client, case):
    params = dict(model="default", temperature=0, logprobs=TOP, **COMPLETIONS[case])
    r = client.completions.create(**params)
    whole = completion_entries(r.choices[0].logprobs)
    streamed, chunks = [], []
    for c in client.completions.create(stream=True, **params):
        if not c.choices:
            continue
        entries = completion_entries(c.choices[0].logprobs)
        streamed += entries
        chunks.append((c.choices[0].text, len(entries)))
    return dict(whole=whole, streamed=streamed, chunks=chunks, finish=r.choices[0].finish_reason)


def collect(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    return {**{("chat", c): chat(client, c) for c in CHATS},
            **{("completion", c): completion(client, c) for c in COMPLETIONS}}


def close(a, b) -> bool:
    """Entries equal: tokens and bytes exactly, logprobs within ATOL (nested tuples)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=ATOL)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return a == b


def mismatches(whole, streamed) -> int:
    """Entries of the non-streamed response the stream does not give at the same position."""
    same = sum(close(a, b) for a, b in zip(whole, streamed))
    return max(len(whole), len(streamed)) - same


def is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
