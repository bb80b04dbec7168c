"""Prometheus metrics of EAGLE speculative decoding, recorded in each scheduler process.

Exported on SGLang's `/metrics` (`--enable-metrics`) next to SGLang's own `sglang:spec_*`, with
the scheduler's labels (model_name, engine_type, tp_rank, pp_rank, moe_ep_rank, dp_rank where
SGLang sets it). Like SGLang's scheduler metrics they are written by the stats-logging rank of
each DP group and go through prometheus-client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set
by SGLang before it starts the schedulers), so several scheduler processes add up on one page.

Definitions (a "request-step" is one request in one verify forward; a "step" is one batch):

    sglang:eagle3_verify_steps_total      request-steps (as SGLang's meta_info spec_verify_ct)
    sglang:eagle3_draft_tokens_total      draft tokens proposed: (num_draft_tokens - 1) per
                                          request-step (as meta_info spec_num_proposed_drafts)
    sglang:eagle3_accepted_tokens_total   draft tokens accepted, bonus token not included
                                          (as meta_info spec_num_correct_drafts)
    sglang:eagle3_accept_length           histogram per request-step of 1 + accepted drafts;
                                          mean accept length = 1 + accepted / verify steps
    sglang:eagle3_accept_rate             gauge: mean accept length over the live-guard window
                                          (last N request-steps) / speculative_num_draft_tokens,
                                          as the drafts' model cards define accept rate
                                          (1.0 = every draft token of a chain accepted)
    sglang:eagle3_position_accepted_total request-steps in which draft position k (depth k of
                                          the tree; k = 1..num_steps) was accepted; the sum
                                          over k equals accepted_tokens_total
    sglang:eagle3_draft_seconds           histogram per decode step: drafting (draft forwards +
                                          draft extend after verify) = step time - verify time
    sglang:eagle3_verify_seconds          histogram per decode step: the target verify forward
    sglang:eagle3_break_even_accept_length  gauge: the live guard's break-even (live_guard.py)

Counts come from the scheduler where it settles each request's accepted run (the same place
SGLang counts spec_verify_ct), so they match SGLang's per-request numbers. Times are wall time
on CPU and CUDA-event time on CUDA (read back later, never synchronizing the step).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Optional

from .acceptance import accept_rate, step_accept_length
from .live_guard import LiveGuard, settings as guard_settings

logger = logging.getLogger("sglang_eagle3_ext")

PREFIX = "sglang:eagle3_"
ACCEPT_LENGTH_BUCKETS = [float(i) for i in range(1, 17)]
SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256,
                   0.512, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]


class StepTimes:
    """Draft and verify time of each decode step, marked by the worker, read by the scheduler.

    On CUDA the marks are events recorded on the current stream; a step is read back only once
    its last event has completed, so timing never waits for the GPU."""

    def __init__(self):
        self.pending = deque(maxlen=4096)
        self.current = None

    @staticmethod
    def _mark(device: str):
        if device.startswith("cuda"):
            import torch

            if torch.cuda.is_current_stream_capturing():
                return None
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def begin(self, device: str) -> None:
        self.current = {"device": device, "marks": [self._mark(device)]}

    def mark_verify(self) -> None:  # called twice: verify start, verify end
        if self.current is not None and len(self.current["marks"]) < 3:
            self.current["marks"].append(self._mark(self.current["device"]))

    def end(self) -> None:
        step, self.current = self.current, None
        if step is None:
            return
        step["marks"].append(self._mark(step["device"]))
        if len(step["marks"]) == 4 and None not in step["marks"]:
            self.pending.append(step["marks"])

    def drain(self) -> list[tuple[float, float]]:
        """(draft_s, verify_s) of finished steps, oldest first."""
        out = []
        while self.pending:
            t0, v0, v1, t1 = self.pending[0]
            if isinstance(t0, float):
                total, verify = t1 - t0, v1 - v0
            else:
                if not t1.query():
                    break
                total, verify = t0.elapsed_time(t1) / 1e3, v0.elapsed_time(v1) / 1e3
            self.pending.popleft()
            out.append((max(total - verify, 0.0), verify))
        return out


STEP_TIMES = StepTimes()


class SpecMetrics:
    """Counters of one scheduler process; prometheus objects only when metrics are on."""

    def __init__(self, labels: Optional[dict], guard: LiveGuard):
        self.labels = {k: str(v) for k, v in labels.items()} if labels is not None else None
        self.guard = guard
        self.positions_seen = 0
        self.prom = self._create() if labels is not None else None

    def _create(self) -> dict:
        # Imported here: prometheus-client must be imported after PROMETHEUS_MULTIPROC_DIR is set.
        from prometheus_client import Counter, Gauge, Histogram

        names = list(self.labels)
        return {
            "verify_steps": Counter(PREFIX + "verify_steps_total",
                                    "Request-steps verified (one per request per verify forward).", names),
            "draft_tokens": Counter(PREFIX + "draft_tokens_total",
                                    "Draft tokens proposed: (speculative_num_draft_tokens - 1) per request-step.",
                                    names),
            "accepted_tokens": Counter(PREFIX + "accepted_tokens_total",
                                       "Draft tokens accepted (bonus token not included).", names),
            "position": Counter(PREFIX + "position_accepted_total",
                                "Request-steps in which draft position k (tree depth k) was accepted.",
                                names + ["position"]),
            "accept_length": Histogram(PREFIX + "accept_length",
                                       "Accept length per request-step: accepted drafts + 1 bonus token.",
                                       names, buckets=ACCEPT_LENGTH_BUCKETS),
            "accept_rate": Gauge(PREFIX + "accept_rate",
                                 "Mean accept length over the live-guard window / speculative_num_draft_tokens.",
                                 names, multiprocess_mode="mostrecent"),
            "break_even": Gauge(PREFIX + "break_even_accept_length",
                                "Accept length below which speculation costs more than it saves (estimate).",
                                names, multiprocess_mode="mostrecent"),
            "draft_seconds": Histogram(PREFIX + "draft_seconds",
                                       "Drafting time per decode step (draft + draft extend).",
                                       names, buckets=SECONDS_BUCKETS),
            "verify_seconds": Histogram(PREFIX + "verify_seconds",
                                        "Target verify time per decode step.", names, buckets=SECONDS_BUCKETS),
        }

    def observe(self, correct_drafts: list[int], num_draft_tokens: int, num_steps: int,
                times: list[tuple[float, float]]) -> None:
        """correct_drafts: accepted draft tokens of each request-step of one batch."""
        for draft_s, verify_s in times:
            self.guard.add_time(draft_s, verify_s)
        self.guard.add_steps(correct_drafts)
        if self.prom is not None:
            self._export(correct_drafts, num_draft_tokens, num_steps, times)

    def _export(self, correct_drafts, num_draft_tokens, num_steps, times) -> None:
        p, lab = self.prom, self.labels
        while self.positions_seen < num_steps:  # every position exists from the start, at 0
            self.positions_seen += 1
            p["position"].labels(**lab, position=str(self.positions_seen))
        for draft_s, verify_s in times:
            p["draft_seconds"].labels(**lab).observe(draft_s)
            p["verify_seconds"].labels(**lab).observe(verify_s)
        if not correct_drafts:
            return
        p["verify_steps"].labels(**lab).inc(len(correct_drafts))
        p["draft_tokens"].labels(**lab).inc(len(correct_drafts) * (num_draft_tokens - 1))
        p["accepted_tokens"].labels(**lab).inc(sum(correct_drafts))
        histogram = p["accept_length"].labels(**lab)
        for c in correct_drafts:
            histogram.observe(step_accept_length(c))
        for k in range(1, max(correct_drafts) + 1):
            p["position"].labels(**lab, position=str(k)).inc(sum(1 for c in correct_drafts if c >= k))
        rate = accept_rate(self.guard.accept_length, num_draft_tokens)
        if rate is not None:
            p["accept_rate"].labels(**lab).set(rate)
        if self.guard.break_even is not None:
            p["break_even"].labels(**lab).set(self.guard.break_even)


_METRICS: Optional[SpecMetrics] = None


def metrics_for(labels: Optional[dict]) -> SpecMetrics:
    """This process's SpecMetrics (labels None: guard only, nothing exported)."""
    global _METRICS
    if _METRICS is None:
        window, break_even = guard_settings()
        _METRICS = SpecMetrics(labels, LiveGuard(window, break_even))
    return _METRICS
