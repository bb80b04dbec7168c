"""SGLang's own penalizers and eagle_sample on stand-in batches, without a server.

Shared by the eagle_sample patch's probe, its tests and benchmarks/bench_penalty_fixup.py:
* `orchestrator(params, vocab, history)`: SGLang's BatchedPenalizerOrchestrator over requests with
  these sampling parameters, fed `history` (rounds of one token per request) through its cumulate;
* `one_by_one(raw, params, vocab, tokens)`: the logits SGLang's non-speculative sampler uses after
  generating `tokens` one at a time (orchestrator, copy_for_forward, apply_logits_bias);
* `verify_context()` / `run_eagle_sample(...)`: one real `eagle_utils.eagle_sample` call.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

EOS = 1  # the stand-in tokenizer's EOS id


class _Tokenizer:
    additional_stop_token_ids = None
    eos_token_id = EOS


class _Batch:  # what BatchedPenalizerOrchestrator reads from a ScheduleBatch (weakref-able)
    def __init__(self, reqs, device):
        self.reqs, self.device = reqs, device


def request(**sampling):
    params = dict(frequency_penalty=0.0, presence_penalty=0.0, repetition_penalty=1.0, min_new_tokens=0,
                  stop_token_ids=None, logit_bias=None)
    params.update(sampling)
    return SimpleNamespace(sampling_params=SimpleNamespace(**params), eos_token_ids={EOS},
                           tokenizer=_Tokenizer())


def penalizer_classes():
    from sglang.srt.sampling import penaltylib

    return (penaltylib.BatchedFrequencyPenalizer, penaltylib.BatchedPresencePenalizer,
            penaltylib.BatchedRepetitionPenalizer, penaltylib.BatchedMinNewTokensPenalizer)


def orchestrator(params: list, vocab: int, history=(), device="cpu", classes=None):
    from sglang.srt.sampling.penaltylib import BatchedPenalizerOrchestrator

    orch = BatchedPenalizerOrchestrator(vocab, _Batch([request(**p) for p in params], device),
                                        set(classes or penalizer_classes()))
    for tokens in history:
        orch.cumulate_output_tokens(torch.tensor(tokens, device=device))
    return orch


def logit_bias(params: list, vocab: int, device="cpu"):
    """[bs, V] as SamplingBatchInfo.from_schedule_batch builds it, or None."""
    if all(p.get("logit_bias") is None for p in params):
        return None
    bias = torch.zeros(len(params), vocab, device=device)
    for i, p in enumerate(params):
        for tok, value in (p.get("logit_bias") or {}).items():
            bias[i, int(tok)] = value
    return bias


def sampling_info(orch, params: list, vocab: int, temperature=1.0, device="cpu"):
    from sglang.srt.sampling.sampling_batch_info import SamplingBatchInfo
    from sglang.srt.sampling.sampling_params import TOP_K_ALL

    bs = len(params)
    return SamplingBatchInfo(
        temperatures=torch.full((bs, 1), float(temperature), device=device),
        top_ps=torch.ones(bs, device=device),
        top_ks=torch.full((bs,), TOP_K_ALL, dtype=torch.int32, device=device),
        min_ps=torch.zeros(bs, device=device), is_all_greedy=temperature == 0,
        is_any_greedy=temperature == 0, need_top_p_sampling=False, need_top_k_sampling=False,
        need_min_p_sampling=False, vocab_size=vocab, penalizer_orchestrator=orch, device=device,
        logit_bias=logit_bias(params, vocab, device))


def one_by_one(raw_row, params: dict, vocab: int, tokens):
    """raw_row with the penalties SGLang's sampler applies after generating `tokens` one by one."""
    orch = orchestrator([params], vocab, [[t] for t in tokens], device=raw_row.device)
    row = raw_row.clone().unsqueeze(0)
    sampling_info(orch, [params], vocab, device=raw_row.device).copy_for_forward().apply_logits_bias(row)
    return row[0]


@contextlib.contextmanager
def verify_context(device="cpu"):
    """The runtime context eagle_sample reads (server args, a one-rank TP group)."""
    from sglang.srt.runtime_context import get_context, get_parallel

    server_args = get_context().override_server_args(device=device)
    server_args.install()
    one = SimpleNamespace(world_size=1)
    try:
        with get_parallel().override(tp_group=one, attn_tp_group=one):
            yield
    finally:
        server_args.restore()


def verify_input(candidates, links, steps, topk):
    """EagleVerifyInput of a tree: candidates [bs, n] (root first), links [3, bs, n] retrieval links."""
    from sglang.srt.speculative.eagle_info import EagleVerifyInput

    bs, n = candidates.shape
    return EagleVerifyInput(
        draft_token=candidates.reshape(-1).clone(), custom_mask=None, positions=None,
        retrieve_index=links[0], retrieve_next_token=links[1], retrieve_next_sibling=links[2],
        retrieve_cum_len=None, spec_steps=steps, topk=topk, draft_token_num=n, capture_hidden_mode=None,
        seq_lens_sum=0, seq_lens_cpu=None)


def verify_batch(orch, params, vocab, temperature=0.0, device="cpu"):
    """A ScheduleBatch stand-in as eagle_sample sees it: the scheduler's forward copy of the
    sampling info (SamplingBatchInfo.copy_for_forward), EAGLE3."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode
    from sglang.srt.speculative.spec_info import SpeculativeAlgorithm

    info = sampling_info(orch, params, vocab, temperature, device)
    return SimpleNamespace(forward_mode=ForwardMode.TARGET_VERIFY, device=device,
                           sampling_info=info.copy_for_forward(), return_logprob=False,
                           seq_lens=torch.full((len(params),), 9, device=device),
                           spec_algorithm=SpeculativeAlgorithm.EAGLE3)


def run_eagle_sample(vi, batch, logits):
    """(predict, accept_lens, accept_index) of SGLang's eagle_sample (logits are not modified)."""
    from sglang.srt.speculative import eagle_utils

    return eagle_utils.eagle_sample(vi, batch, SimpleNamespace(next_token_logits=logits.clone()))
