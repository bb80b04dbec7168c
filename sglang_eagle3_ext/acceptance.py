"""Accept length and accept rate, as SGLang and the drafts' model cards define them.

A verify step (one request in one target-verify forward) accepts some draft tokens and adds one
token of the target's own (the bonus), so it yields accepted + 1 tokens:

    accept length = 1 + accepted draft tokens / verify steps        (SGLang's sglang:spec_accept_length)
    accept rate   = accept length / speculative_num_draft_tokens    (the model cards' "accept rate")
    draft accept rate = accepted / (verify steps * (num_draft_tokens - 1))   (SGLang's spec_accept_rate)

From SGLang's finished-request counters the same accept length is (generated tokens - requests) /
verify steps: each request's first token comes from prefill, not from a verify step. SGLang's
per-request meta_info `spec_accept_length` (completion_tokens / spec_verify_ct) counts that first
token too, so it is a little higher for short requests; nothing here uses it.
"""

from __future__ import annotations

from typing import Iterable, Optional


def accept_length(accepted: float, verify_steps: float) -> Optional[float]:
    """Tokens per verify step: accepted draft tokens + the bonus token; None without steps."""
    return 1 + accepted / verify_steps if verify_steps > 0 else None


def accepted_from_tokens(generated: float, requests: float, verify_steps: float) -> float:
    """Accepted draft tokens from finished-request counts: of the generated tokens, each
    request's first comes from prefill and each verify step adds one bonus token."""
    return generated - requests - verify_steps


def accept_rate(length: Optional[float], num_draft_tokens: Optional[int]) -> Optional[float]:
    """The model cards' accept rate: accept length / tokens verified per step (1.0 = all)."""
    if length is None or not num_draft_tokens:
        return None
    return length / num_draft_tokens


def draft_accept_rate(accepted: float, verify_steps: float, num_draft_tokens: Optional[int]) -> Optional[float]:
    """Accepted / proposed draft tokens (the bonus token is not a draft token)."""
    if verify_steps <= 0 or not num_draft_tokens or num_draft_tokens < 2:
        return None
    return accepted / (verify_steps * (num_draft_tokens - 1))


def step_accept_length(accepted: int) -> int:
    """One verify step's accept length."""
    return 1 + accepted


def from_requests(meta_infos: Iterable[dict], num_draft_tokens: Optional[int]) -> dict:
    """Acceptance over finished requests from SGLang's per-request counts (meta_info
    spec_verify_ct, spec_num_correct_drafts)."""
    metas = list(meta_infos)
    steps = sum(m.get("spec_verify_ct") or 0 for m in metas)
    accepted = sum(m.get("spec_num_correct_drafts") or 0 for m in metas)
    length = accept_length(accepted, steps)
    return {"requests": len(metas), "verify_steps": steps, "accepted_tokens": accepted,
            "draft_tokens": steps * (num_draft_tokens - 1) if num_draft_tokens else None,
            "num_draft_tokens": num_draft_tokens, "accept_length": length,
            "accept_rate": accept_rate(length, num_draft_tokens)}
