"""Exact penalties, min_tokens and logit_bias under EAGLE tree verification.

What upstream SGLang 0.5.23 does (sglang.srt.speculative.eagle_utils, .eagle_worker_common,
.eagle_worker_v2, sglang.srt.sampling.sampling_batch_info, .penaltylib):

* One worker path. EAGLE / EAGLE3 / STANDALONE always run `EAGLEWorkerV2` (with overlap
  scheduling, or driven synchronously without it: on CPU SGLang forces the latter); there is no
  v1 `eagle_worker` module. Its `verify` is `eagle_worker_common.run_eagle_verify`, which calls
  `eagle_utils.eagle_sample` (imported by value there and in `ngram_worker`).
* Penalty state. `BatchedPenalizerOrchestrator` holds per-request tensors: frequency
  (fp32 [bs, V], +frequency_penalty per occurrence by scatter_add_), presence (presence_penalty
  at seen tokens), repetition (repetition_penalty at seen tokens, else 1; output tokens only, the
  prompt is not counted) and min-new-tokens (a counter, -inf at EOS / stop_token_ids /
  the tokenizer's stop ids). Before each forward the scheduler takes
  `SamplingBatchInfo.copy_for_forward`: the additive penalties summed into one [bs, V] tensor,
  the scaling ones into another, and the orchestrator dropped from the copy.
* The non-speculative sampler (`SamplingBatchInfo.apply_logits_bias`) applies: logits += additive;
  where(x < 0, x * s, x / s); grammar mask; + logit_bias.
* `eagle_sample` applies the same two tensors and logit_bias to every draft-tree node with
  `repeat_interleave` ("a relaxed version of penalties for speculative decoding"): a token drafted
  at depth 1 is not penalized at depth 2, min_tokens is judged at the tree's root for all nodes.
* State advance. `eagle_prepare_for_decode` calls `ScheduleBatch.cumulate_penalty_output_tokens`
  once per verify step with `req.output_ids[-1]`: ONE token per step however many were accepted
  (an accept length of 2 leaves half the output uncounted, and min_tokens counts steps, not
  tokens); under overlap scheduling output_ids lags a step behind as well, and the first step
  counts the prompt's last token.
* The non-speculative path counts with the same `cumulate_penalty_output_tokens` in
  `ScheduleBatch.prepare_for_decode`: exact with the synchronous scheduler (the previous step's
  result is in output_ids), but under overlap scheduling (SGLang's default off-CPU-spec) it reads
  output_ids before the previous step is processed: the first decode counts the prompt's last
  token, later ones each token a step late, and which one depends on batch timing. The reference
  for "exact" is therefore the synchronous scheduler; this patch leaves the non-speculative path
  alone.

What this patch does (batches of EAGLE, EAGLE3 and STANDALONE; NGRAM keeps upstream's relaxed
verify):

* `eagle_sample` wrapper: each tree node's logits get the penalties of the committed prefix plus
  the tokens on the node's own root path, exactly as if generated one by one
  (`kernels/penalty_fixup.py`, one launch; semantics in `kernels/penalty_fixup_reference.py`),
  and logit_bias; upstream's relaxed application is switched off for that call. Greedy verify then
  takes the argmax of exactly penalized logits, and tree sampling (temperature > 0) draws from
  the exactly penalized distribution. After verify the accepted nodes' tokens are counted into
  SGLang's own penalizer tensors on the device (`penalty_advance`), in order: state = every
  committed token but the last, which is the next tree's root (the fix-up counts the root).
* `cumulate_penalty_output_tokens` does nothing for those batches (the verify counted already).
* `copy_for_forward` keeps a reference to the orchestrator on the forward copy (the wrapper reads
  the per-penalty tensors, not the summed ones).
* `BatchedPenalizerOrchestrator.filter` / `merge` wait on the CUDA event recorded after the
  advance: under overlap scheduling they run on the schedule stream while the verify that updates
  the state may still be running on the forward stream. (Not exercised on CPU.)

Requests without penalties pay nothing: a batch whose orchestrator is not required goes straight
to upstream's eagle_sample (no launch, no tensor); logit_bias alone is constant per request, which
upstream already applies exactly.

Left relaxed: the draft model proposes without penalties (acceptance only, never output); NGRAM
and other speculative algorithms; a grammar that truncates an accepted run mid-step while the
request continues (the whole run is counted); a retracted request restarts its penalty state
(as upstream's non-speculative path does).

Probed before anything changes: the signatures, dataclass fields, the penalizer classes (an
unknown one = not applied), and a round trip through SGLang's own penalizers on a tiny CPU batch:
the state this patch reads and advances must mean what SGLang's cumulate / accumulate compute.
"""

from __future__ import annotations

import dataclasses
import logging

from .base import NotApplicable, Patch, Target, module_exists

EAGLE_UTILS = "sglang.srt.speculative.eagle_utils"
SAMPLE = f"{EAGLE_UTILS}:eagle_sample"
INFO = "sglang.srt.sampling.sampling_batch_info:SamplingBatchInfo"
CUMULATE = "sglang.srt.managers.schedule_batch:ScheduleBatch.cumulate_penalty_output_tokens"
PENALTYLIB = "sglang.srt.sampling.penaltylib"
ORCH = f"{PENALTYLIB}.orchestrator:BatchedPenalizerOrchestrator"
VERIFY_INPUT = "sglang.srt.speculative.eagle_info:EagleVerifyInput"
ALGORITHM = "sglang.srt.speculative.spec_info:SpeculativeAlgorithm"
V1_WORKER = "sglang.srt.speculative.eagle_worker"

STASH = "_eagle3_ext_penalizers"  # on the forward copy of SamplingBatchInfo: the orchestrator
ADVANCED = "_eagle3_ext_advanced"  # on the orchestrator: CUDA event after the last advance
EXACT_ALGORITHMS = ("EAGLE", "EAGLE3", "STANDALONE")
PENALIZERS = ("BatchedFrequencyPenalizer", "BatchedPresencePenalizer",
              "BatchedRepetitionPenalizer", "BatchedMinNewTokensPenalizer")
INFO_FIELDS = ("penalizer_orchestrator", "acc_additive_penalties", "acc_scaling_penalties",
               "logit_bias")
VERIFY_FIELDS = ("draft_token", "retrieve_next_token", "retrieve_next_sibling", "draft_token_num")

logger = logging.getLogger("sglang_eagle3_ext")


# ------------------------------------------------------------------ SGLang state -> PenaltyState


def penalty_state(orchestrator, logit_bias, classes):
    """PenaltyState over the orchestrator's own tensors (prepared penalizers only)."""
    from sglang_eagle3_ext.kernels.penalty_fixup_reference import PenaltyState

    freq, pres, rep, min_new = classes
    s = PenaltyState(logit_bias=logit_bias)
    for cls, pen in orchestrator.penalizers.items():
        if not pen.is_prepared():
            continue
        if cls is freq:
            s.frequency, s.cum_frequency = pen.frequency_penalties, pen.cumulated_frequency_penalties
        elif cls is pres:
            s.presence, s.cum_presence = pen.presence_penalties, pen.cumulated_presence_penalties
        elif cls is rep:
            s.repetition, s.cum_repetition = pen.repetition_penalties, pen.cumulated_repetition_penalties
        elif cls is min_new:
            s.min_new_tokens, s.out_len = pen.min_new_tokens, pen.len_output_tokens
            s.stop_penalties = pen.stop_token_penalties
        else:  # the plan refuses SGLang versions with other penalizers; never silently relax
            raise RuntimeError(f"unknown penalizer {cls.__name__}")
    return s


# ------------------------------------------------------------------ probe


PROBE_PARAMS = [dict(frequency_penalty=0.5, presence_penalty=0.25, repetition_penalty=1.3, min_new_tokens=4,
                     stop_token_ids={5}),
                dict(frequency_penalty=-0.75, repetition_penalty=0.8, min_new_tokens=1)]


def _round_trip(classes) -> None:
    """Tokens counted by SGLang's cumulate vs by our advance; SGLang's summed penalties vs ours."""
    import torch

    from sglang_eagle3_ext import penalty_harness as h
    from sglang_eagle3_ext.kernels import penalty_fixup_reference as ref

    vocab, history = 12, [[3, 7], [3, 3], [9, 7]]
    step = [[2, 3], [4, 4]]  # per request: the root and one accepted draft
    ours = h.orchestrator(PROBE_PARAMS, vocab, history, classes=classes)
    theirs = h.orchestrator(PROBE_PARAMS, vocab, history + [list(t) for t in zip(*step)], classes=classes)
    state = penalty_state(ours, None, classes)
    flat = torch.tensor(step).reshape(-1)  # node 2b = root, 2b + 1 its accepted child
    predict = torch.stack([flat[1], flat[1], flat[3], flat[3]])  # committed after root / child
    ref.penalty_advance(state, flat, predict, torch.tensor([[0, 1], [2, 3]]), torch.tensor([2, 2]))
    add_ours, add_theirs = torch.zeros(2, vocab), torch.zeros(2, vocab)
    ours.accumulate_additive_penalties(add_ours)
    theirs.accumulate_additive_penalties(add_theirs)
    if not (torch.equal(add_ours, add_theirs) and torch.equal(
            ours.accumulate_scaling_penalties(), theirs.accumulate_scaling_penalties())):
        raise NotApplicable("this SGLang's penalizer state does not advance as the fix-up assumes")
    # the fix-up over a root-only tree = SGLang's additive + scaling after counting the root
    roots = torch.tensor([[6], [1]])
    logits = torch.linspace(-3, 3, 2 * vocab).reshape(2, vocab)
    mine = logits.clone()
    ref.penalty_fixup(mine, roots, torch.full((2, 1), -1), torch.full((2, 1), -1),
                      penalty_state(h.orchestrator(PROBE_PARAMS, vocab, classes=classes), None, classes))
    counted = h.orchestrator(PROBE_PARAMS, vocab, [roots.view(-1).tolist()], classes=classes)
    add = torch.zeros(2, vocab)
    counted.accumulate_additive_penalties(add)
    expected, scale = logits + add, counted.accumulate_scaling_penalties()
    expected = torch.where(expected < 0, expected * scale, expected / scale)
    if not torch.equal(mine, expected):
        raise NotApplicable("this SGLang's penalties differ from the fix-up's reading of them")


def _check_fields(p, path: str, names) -> None:
    cls = p.get(path)
    have = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    have |= {n for n in names if isinstance(getattr(cls, n, None), property)}
    lost = [n for n in names if n not in have]
    if lost:
        raise NotApplicable(f"{path} has no field(s) {lost}")


# ------------------------------------------------------------------ the wrappers


def _cuda_wait(orchestrator) -> None:
    event = getattr(orchestrator, ADVANCED, None)
    if event is not None:
        import torch

        torch.cuda.current_stream().wait_event(event)


def plan(p) -> str:
    if module_exists(V1_WORKER):
        raise NotApplicable(f"{V1_WORKER} (the v1 EAGLE worker) is here; only the V2 path is covered")
    p.params(SAMPLE, ("verify_input", "batch", "logits_output"), ordered=True)
    p.params(CUMULATE, ())
    _check_fields(p, INFO, INFO_FIELDS)
    _check_fields(p, VERIFY_INPUT, VERIFY_FIELDS + ("max_tree_depth",))
    p.load(PENALTYLIB)
    classes = tuple(p.get(f"{PENALTYLIB}:{name}") for name in PENALIZERS)
    base = p.get(f"{PENALTYLIB}.orchestrator:_BatchedPenalizer")
    unknown = sorted(c.__name__ for c in base.__subclasses__() if c not in classes)
    if unknown:
        raise NotApplicable(f"penalizers the fix-up does not know: {unknown}")
    algorithm = p.get(ALGORITHM)
    exact = tuple(getattr(algorithm, name) for name in EXACT_ALGORITHMS if hasattr(algorithm, name))
    if not exact:
        raise NotApplicable(f"{ALGORITHM} has none of {EXACT_ALGORITHMS}")
    try:
        _round_trip(classes)
    except NotApplicable:
        raise
    except Exception as e:  # a penalizer reading something our probe batch lacks: not ours to guess
        raise NotApplicable(f"penalizer round trip failed ({type(e).__name__}: {e})") from None

    from sglang_eagle3_ext.kernels.penalty_fixup import penalty_advance, penalty_fixup

    def is_exact(batch) -> bool:
        return getattr(batch, "spec_algorithm", None) in exact

    def make_sample(original):
        def eagle_sample(verify_input, batch, logits_output, *args, **kwargs):
            info = batch.sampling_info
            orch = getattr(info, "penalizer_orchestrator", None) or getattr(info, STASH, None)
            if (orch is None or not orch.is_required or not is_exact(batch)
                    or batch.forward_mode.is_idle()):
                return original(verify_input, batch, logits_output, *args, **kwargs)
            state = penalty_state(orch, info.logit_bias, classes)
            n = verify_input.draft_token_num
            logits = logits_output.next_token_logits
            candidates = verify_input.draft_token.view(-1, n)
            penalty_fixup(logits, candidates, verify_input.retrieve_next_token,
                          verify_input.retrieve_next_sibling, state,
                          max_path=verify_input.max_tree_depth)
            batch.sampling_info = dataclasses.replace(
                info, acc_additive_penalties=None, acc_scaling_penalties=None, logit_bias=None)
            try:
                out = original(verify_input, batch, logits_output, *args, **kwargs)
            finally:
                batch.sampling_info = info
            predict, accept_lens, accept_index = out
            penalty_advance(state, verify_input.draft_token, predict, accept_index, accept_lens)
            if logits.is_cuda:
                import torch

                event = torch.cuda.Event()
                event.record()
                setattr(orch, ADVANCED, event)
            return out

        return eagle_sample

    def make_copy(original):
        def copy_for_forward(self):
            copy = original(self)
            orch = self.penalizer_orchestrator
            if orch is not None and orch.is_required:
                setattr(copy, STASH, orch)
            return copy

        return copy_for_forward

    def make_cumulate(original):
        def cumulate_penalty_output_tokens(self):
            if is_exact(self):
                return  # eagle_sample counted the accepted tokens
            return original(self)

        return cumulate_penalty_output_tokens

    def make_filter(original):
        def filter(self, keep_indices):
            _cuda_wait(self)
            return original(self, keep_indices)

        return filter

    def make_merge(original):
        def merge(self, their):
            _cuda_wait(self)
            _cuda_wait(their)
            return original(self, their)

        return merge

    p.wrap(SAMPLE, make_sample)
    p.wrap(f"{INFO}.copy_for_forward", make_copy)
    p.wrap(CUMULATE, make_cumulate)
    p.wrap(f"{ORCH}.filter", make_filter)
    p.wrap(f"{ORCH}.merge", make_merge)
    names = ", ".join(a.name for a in exact)
    return f"exact per-node penalties in eagle_sample for {names} (Triton: one fix-up + one state-advance launch per verify)"


PATCH = Patch(
    "eagle_sample.penalties",
    "EAGLE verify: exact penalties / min_tokens / logit_bias per draft-tree node, state advanced by accepted tokens",
    plan, on_import=EAGLE_UTILS,
    targets=[Target(SAMPLE, params=("verify_input", "batch", "logits_output"), ordered=True),
             Target(f"{INFO}.copy_for_forward"),
             Target(CUMULATE),
             Target(f"{ORCH}.filter", params=("keep_indices",), ordered=True),
             Target(f"{ORCH}.merge", params=("their",), ordered=True),
             Target(INFO, "read"), Target(VERIFY_INPUT, "read"), Target(ALGORITHM, "read"),
             *[Target(f"{PENALTYLIB}:{name}", "read") for name in PENALIZERS],
             Target(f"{PENALTYLIB}.orchestrator:_BatchedPenalizer", "read")])
