"""Plain-torch reference of the exact per-node penalty fix-up (``penalty_fixup``: Triton).

What "exact" means: every row of the target-verify logits (one per draft-tree node) gets the
penalties SGLang's non-speculative sampler would apply if the tokens on that node's path had
been generated one by one. Per request b, with SGLang's penalizer tensors as ``PenaltyState``:

  path(j)   the tokens of the nodes from the root down to node j, root included. The root is
            the last committed token; under our accounting (``penalty_advance``) the state
            holds every committed token except that last one, so root + ancestors is what a
            one-by-one decoder would have counted. Siblings never enter a path.
  additive  acc = 0 - cum_frequency' - cum_presence' + where(mask, stop_penalties, 0), where
            cum_frequency' adds ``frequency[b]`` once per occurrence in path(j) (sequential
            fp32 adds, as SGLang's scatter_add_), cum_presence' is ``presence[b]`` at path
            tokens, mask = out_len[b] + len(path(j)) < min_new_tokens[b] (tokens generated
            before this prediction). The order of the additive penalizers does not matter:
            every partial sum is the same IEEE sum (a - b - c == a - c - b in fp32).
  logits    x += acc (rounded to the logits' dtype, as ``logits.add_``), then the repetition
            scaling where(x < 0, x * r, x / r) with r = ``repetition[b]`` at path tokens and
            ``cum_repetition`` elsewhere, then ``+ logit_bias``: SGLang's order
            (SamplingBatchInfo: additive penalties, scaling penalties, grammar, logit_bias).

SGLang 0.5.23's repetition penalty counts output tokens only (prompt tokens are not in its
state), like the frequency and presence penalties; the fix-up follows whatever the state holds.

``penalty_advance`` moves the state past one verify step: the root's token, then every token the
step committed but the last (the bonus token, the next tree's root), in order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch


@dataclass
class PenaltyState:
    """One verify step's penalty inputs, one row per request; None = that penalty is off.

    The tensors are SGLang's own penalizer tensors (read and, by ``penalty_advance``, updated
    in place): scalars per request may be [bs] or [bs, 1]; vocab-wide ones [bs, V] with unit
    column stride (``stop_penalties`` is a strided view in SGLang)."""

    frequency: Optional[torch.Tensor] = None  # fp32: the request's frequency_penalty
    cum_frequency: Optional[torch.Tensor] = None  # fp32: frequency summed per occurrence
    presence: Optional[torch.Tensor] = None  # fp32: presence_penalty
    cum_presence: Optional[torch.Tensor] = None  # fp32: presence_penalty at seen tokens, else 0
    repetition: Optional[torch.Tensor] = None  # fp32: repetition_penalty
    cum_repetition: Optional[torch.Tensor] = None  # fp32: repetition_penalty at seen tokens, else 1
    min_new_tokens: Optional[torch.Tensor] = None  # int: min_tokens
    out_len: Optional[torch.Tensor] = None  # int: tokens counted so far
    stop_penalties: Optional[torch.Tensor] = None  # fp32: -inf at EOS / stop_token_ids, else 0
    logit_bias: Optional[torch.Tensor] = None  # fp32: added last

    PAIRS = (("frequency", "cum_frequency"), ("presence", "cum_presence"),
             ("repetition", "cum_repetition"), ("min_new_tokens", "out_len"),
             ("min_new_tokens", "stop_penalties"))

    def check(self, bs: int, vocab: int) -> None:
        for a, b in self.PAIRS:
            if (getattr(self, a) is None) != (getattr(self, b) is None):
                raise ValueError(f"PenaltyState: {a} and {b} must be given together")
        for f in fields(self):
            t = getattr(self, f.name)
            if t is None:
                continue
            if t.shape[0] != bs:
                raise ValueError(f"PenaltyState.{f.name}: {t.shape[0]} rows for {bs} requests")
            vocab_wide = f.name.startswith("cum_") or f.name in ("stop_penalties", "logit_bias")
            if vocab_wide and (t.dim() != 2 or t.shape[1] != vocab or t.stride(1) != 1):
                raise ValueError(f"PenaltyState.{f.name} must be [bs, {vocab}] with unit column stride")
            if not vocab_wide and t.numel() != bs:
                raise ValueError(f"PenaltyState.{f.name} must hold one value per request")

    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


def tree_paths(next_token: list, next_sibling: list) -> list:
    """path[j] = node ids from the root (0) down to j, from one request's retrieval links."""
    n = len(next_token)
    path = [None] * n
    path[0] = [0]
    stack = [0]
    while stack:
        node = stack.pop()
        child = next_token[node]
        while child != -1:
            path[child] = path[node] + [child]
            stack.append(child)
            child = next_sibling[child]
    return path


def _per_request(t: Optional[torch.Tensor], b: int):
    return None if t is None else t.reshape(-1)[b]


def penalty_fixup(logits: torch.Tensor, candidates: torch.Tensor, retrive_next_token: torch.Tensor,
                  retrive_next_sibling: torch.Tensor, state: PenaltyState) -> None:
    """Apply each node's exact penalties to ``logits`` [bs * n, V] in place (see module doc)."""
    bs, n = candidates.shape
    state.check(bs, logits.shape[1])
    for b in range(bs):
        paths = tree_paths(retrive_next_token[b].tolist(), retrive_next_sibling[b].tolist())
        for j in range(n):
            if paths[j] is None:  # not connected to the root: not part of the tree
                continue
            tokens = [int(candidates[b, i]) for i in paths[j]]
            x = logits[b * n + j]
            acc = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
            if state.frequency is not None:
                cum = state.cum_frequency[b].clone()
                f = _per_request(state.frequency, b).float()
                for t in tokens:  # one fp32 add per occurrence, in order
                    cum[t] += f
                acc.sub_(cum)
            if state.presence is not None:
                cum = state.cum_presence[b].clone()
                cum[tokens] = _per_request(state.presence, b).float()
                acc.sub_(cum)
            if state.min_new_tokens is not None:
                generated = int(_per_request(state.out_len, b)) + len(tokens)
                mask = torch.tensor(generated < int(_per_request(state.min_new_tokens, b)))
                acc.add_(torch.where(mask, state.stop_penalties[b], 0.0))
            x.add_(acc)
            if state.repetition is not None:
                scale = state.cum_repetition[b].clone()
                scale[tokens] = _per_request(state.repetition, b).float()
                x[:] = torch.where(x < 0, x * scale, x / scale)
            if state.logit_bias is not None:
                x.add_(state.logit_bias[b])


def penalty_advance(state: PenaltyState, draft_tokens: torch.Tensor, predict: torch.Tensor,
                    accept_index: torch.Tensor, accept_lens: torch.Tensor) -> None:
    """Count one verify step into the state, in order: the root's token, then the tokens committed
    after each accepted node but the last (predict there; the bonus token becomes the next root).

    draft_tokens, predict: flat [bs * n] (global node ids index them); accept_index [bs, W] global
    ids of the root and the accepted drafts; accept_lens [bs] how many of them (drafts + 1).
    Reading predict rather than the accepted drafts' tokens (equal in a real verify) counts what
    was committed even where acceptance is simulated."""
    flat, committed = draft_tokens.reshape(-1), predict.reshape(-1)
    for b in range(accept_index.shape[0]):
        count = int(accept_lens[b])
        nodes = [int(i) for i in accept_index[b, :count]]
        tokens = [int(flat[nodes[0]])] + [int(committed[i]) for i in nodes[:-1]]
        for t in tokens:
            if state.frequency is not None:
                state.cum_frequency[b, t] += _per_request(state.frequency, b).float()
            if state.presence is not None:
                state.cum_presence[b, t] = _per_request(state.presence, b).float()
            if state.repetition is not None:
                state.cum_repetition[b, t] = _per_request(state.repetition, b).float()
        if state.out_len is not None:
            state.out_len.view(-1)[b] += count
