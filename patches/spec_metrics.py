"""Record EAGLE acceptance and step times into sglang_eagle3_ext.spec_metrics (and the live guard).

Hook points, found by feature:
* counts: the scheduler's `SchedulerBatchResultProcessor._resolve_spec_v2_tokens`, where SGLang
  settles each request's accepted run on the CPU. We read back what SGLang itself added to each
  request there (`spec_verify_ct`, `spec_num_correct_drafts`), so retracted or already finished
  requests are skipped exactly as SGLang skips them, and no extra GPU->CPU copy is made.
* times: `EAGLEWorkerV2.forward_batch_generation` (a decode step) and `EAGLEWorkerV2.verify`.
"""

from __future__ import annotations

import logging

from .base import Patch, Target

RESOLVE = ("sglang.srt.managers.scheduler_components.batch_result_processor:"
           "SchedulerBatchResultProcessor._resolve_spec_v2_tokens")
WORKER = "sglang.srt.speculative.eagle_worker_v2:EAGLEWorkerV2"

logger = logging.getLogger("sglang_eagle3_ext")

_broken = []  # one log line if the recording itself fails, then it stays off


def _is_eagle(worker) -> bool:
    algo = getattr(worker, "speculative_algorithm", None)
    return algo is not None and callable(getattr(algo, "is_eagle", None)) and algo.is_eagle()


def _labels(reporter):
    """The scheduler's metric labels where this rank exports metrics, else None."""
    collector = getattr(reporter, "metrics_collector", None)
    if collector is None or not getattr(reporter, "current_scheduler_metrics_enabled", False):
        return None
    return dict(getattr(collector, "labels", {}))


def _record(processor, result, reqs, before) -> None:
    from sglang_eagle3_ext.spec_metrics import STEP_TIMES, metrics_for

    worker = processor.model_worker
    times = STEP_TIMES.drain()
    if not _is_eagle(worker):
        return
    correct = [r.spec_num_correct_drafts - c0 for r, (v0, c0) in zip(reqs, before)
               if r.spec_verify_ct == v0 + 1]
    num_draft_tokens = (getattr(result, "speculative_num_draft_tokens", None)
                        or worker.speculative_num_draft_tokens)
    reporter = getattr(processor, "metrics_reporter", None)
    metrics = metrics_for(_labels(reporter))
    metrics.observe(correct, num_draft_tokens, worker.speculative_num_steps, times)
    if getattr(reporter, "is_stats_logging_rank", True):
        metrics.guard.check()


def plan(p) -> str:
    def make_resolve(original):
        def _resolve_spec_v2_tokens(self, result, batch, *args, **kwargs):
            reqs = list(batch.reqs)
            before = [(getattr(r, "spec_verify_ct", None), getattr(r, "spec_num_correct_drafts", None))
                      for r in reqs]
            out = original(self, result, batch, *args, **kwargs)
            if not _broken:
                try:
                    _record(self, result, reqs, before)
                except Exception as e:  # metrics must never take the server down
                    _broken.append(e)
                    logger.error("sglang-eagle3-ext: speculative metrics off after an error: %s: %s",
                                 type(e).__name__, e)
            return out

        return _resolve_spec_v2_tokens

    def make_forward(original):
        def forward_batch_generation(self, batch, *args, **kwargs):
            from sglang_eagle3_ext.spec_metrics import STEP_TIMES

            mode = batch.forward_mode
            decode = not (mode.is_extend() or getattr(batch, "is_extend_in_batch", False) or mode.is_idle())
            if decode:
                STEP_TIMES.begin(str(getattr(self, "device", "cpu")))
            out = original(self, batch, *args, **kwargs)
            if decode:
                STEP_TIMES.end()
            return out

        return forward_batch_generation

    def make_verify(original):
        def verify(self, *args, **kwargs):
            from sglang_eagle3_ext.spec_metrics import STEP_TIMES

            STEP_TIMES.mark_verify()
            out = original(self, *args, **kwargs)
            STEP_TIMES.mark_verify()
            return out

        return verify

    p.wrap(RESOLVE, make_resolve)
    p.wrap(f"{WORKER}.forward_batch_generation", make_forward)
    p.wrap(f"{WORKER}.verify", make_verify)
    return "acceptance counted at _resolve_spec_v2_tokens, EAGLEWorkerV2 draft/verify timed"


PATCH = Patch("spec_metrics", "sglang:eagle3_* acceptance/timing metrics on /metrics, live break-even guard",
              plan, targets=[Target(RESOLVE, params=("result", "batch"), ordered=True),
                             Target(f"{WORKER}.forward_batch_generation", params=("batch",), ordered=True),
                             Target(f"{WORKER}.verify")])
