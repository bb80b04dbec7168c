"""Acceptance from the server's Prometheus counters, as deltas over a measured window.

Two sources, chosen by which series the server exports:

* eagle3_ext (this plugin's counters, preferred): sglang:eagle3_verify_steps_total,
  sglang:eagle3_accepted_tokens_total (accepted draft tokens, bonus not included) and
  sglang:eagle3_draft_tokens_total. accept length = 1 + accepted / steps.
* sglang (SGLang's own, counted per finished request): accept length = (generation tokens -
  requests) / verify calls, since each request's first token comes from prefill, not from a
  verify step. tokens_per_verify = generation tokens / verify calls is SGLang's per-request
  completion_tokens / spec_verify_ct, which counts that first token too.

accept rate = accept length / draft tokens per step, as the model cards define it; draft accept
rate = accepted draft tokens / proposed draft tokens. The formulas are sglang_eagle3_ext.acceptance.
"""

from __future__ import annotations

import time

from .. import acceptance as acc
from .client import get_text

OURS = {"steps": "sglang:eagle3_verify_steps_total",
        "accepted": "sglang:eagle3_accepted_tokens_total",
        "drafted": "sglang:eagle3_draft_tokens_total"}
SGLANG = {"generated": "sglang:generation_tokens_total",
          "verify": "sglang:spec_verify_calls_total",
          "requests": "sglang:num_requests_total"}
WANTED = {**OURS, **SGLANG}


def parse(text: str) -> dict:
    """{short name: value summed over label sets} for the counters we read; absent series left out."""
    from prometheus_client.parser import text_string_to_metric_families

    by_name = {v: k for k, v in WANTED.items()}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = by_name.get(sample.name)
            if key is not None:
                out[key] = out.get(key, 0.0) + sample.value
    return out


def scrape(url: str) -> dict | None:
    """The server's counters now; None when it serves no /metrics (started without --enable-metrics)."""
    text = get_text(url.rstrip("/") + "/metrics")
    return None if text is None else parse(text)


def scrape_settled(url: str, before: dict | None, expected_tokens: int, wait_s: float = 3.0):
    """scrape(), retried briefly until the generation counter covers every finished request
    (SGLang counts a request right after its last chunk is queued for the client)."""
    deadline = time.monotonic() + wait_s
    while True:
        now = scrape(url)
        if now is None or before is None:
            return now
        done = now.get("generated", 0) - before.get("generated", 0)
        if done >= expected_tokens or time.monotonic() > deadline:
            return now
        time.sleep(0.05)


def delta(after: dict | None, before: dict | None) -> dict | None:
    if after is None or before is None:
        return None
    return {k: after[k] - before.get(k, 0.0) for k in after}


def acceptance(d: dict | None, num_draft_tokens: int | None) -> dict:
    """Accept length / rates from a counter delta (sglang_eagle3_ext.acceptance), and which
    counters they come from."""
    if d is None:
        return {"source": None, "why": "no /metrics: start the server with --enable-metrics"}
    out = {"source": None, "accept_length": None, "accept_rate": None, "draft_accept_rate": None,
           "counters": {k: int(v) for k, v in d.items()}}
    if d.get("steps", 0) > 0:
        accepted, steps = d.get("accepted", 0), d["steps"]
        out.update(source="eagle3_ext", accept_length=acc.accept_length(accepted, steps))
        if d.get("drafted"):
            out["draft_accept_rate"] = accepted / d["drafted"]  # the proposed count, as exported
    elif d.get("verify", 0) > 0:
        generated, verify = d.get("generated", 0), d["verify"]
        accepted = acc.accepted_from_tokens(generated, d.get("requests", 0), verify)
        out.update(source="sglang", accept_length=acc.accept_length(accepted, verify),
                   tokens_per_verify=generated / verify,
                   draft_accept_rate=acc.draft_accept_rate(accepted, verify, num_draft_tokens))
    else:
        out["why"] = "no verify steps in the window: not a speculative server"
        return out
    out["accept_rate"] = acc.accept_rate(out["accept_length"], num_draft_tokens)
    return out
