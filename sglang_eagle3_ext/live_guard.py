"""Live guard: is speculation still paying for itself? One log line when it stops.

A speculative step costs draft + verify time and yields `accept length` tokens; a plain decode
step costs about one target forward and yields one. On a GPU, decode and a verify of a few
tokens are both memory-bound, so a verify costs about one decode step and

    break-even accept length ~= (draft time + verify time) / verify time   (per step)

Below it the server would be faster without speculation. The estimate is optimistic at large
batches (a verify of B x n tokens can cost more than a decode of B): set
SGLANG_EAGLE3_EXT_BREAK_EVEN to a measured value to replace it.

The window is the last N request-steps (SGLANG_EAGLE3_EXT_GUARD_WINDOW, default 256; 0 turns
the guard off). It is judged each time N new request-steps have arrived; a drop below break-even
is logged once, and logged again only after acceptance has recovered in between.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Optional


logger = logging.getLogger("sglang_eagle3_ext")



def settings() -> tuple[int, Optional[float]]:
    """(window in request-steps, fixed break-even accept length or None to estimate)."""
    from .settings import settings as all_settings

    s = all_settings()
    return s.guard_window, s.break_even


class LiveGuard:
    def __init__(self, window: int, break_even: Optional[float] = None):
        self.window = window
        self.fixed_break_even = break_even
        self.accepts = deque(maxlen=max(window, 1))  # accept length per request-step (incl. bonus)
        self.times = deque(maxlen=max(window, 1))  # (draft_s, verify_s) per batch step
        self.accept_sum = 0.0
        self.since_check = 0
        self.below = False  # logged and not yet recovered

    def add_accepts(self, accept_lengths) -> None:
        for a in accept_lengths:
            if len(self.accepts) == self.accepts.maxlen:
                self.accept_sum -= self.accepts[0]
            self.accepts.append(a)
            self.accept_sum += a
        self.since_check += len(accept_lengths)

    def add_time(self, draft_s: float, verify_s: float) -> None:
        self.times.append((draft_s, verify_s))

    @property
    def accept_length(self) -> Optional[float]:
        return self.accept_sum / len(self.accepts) if self.accepts else None

    @property
    def mean_times(self) -> Optional[tuple[float, float]]:
        if not self.times:
            return None
        return (sum(d for d, _ in self.times) / len(self.times),
                sum(v for _, v in self.times) / len(self.times))

    @property
    def break_even(self) -> Optional[float]:
        if self.fixed_break_even is not None:
            return self.fixed_break_even
        times = self.mean_times
        if times is None or times[1] <= 0:
            return None
        return (times[0] + times[1]) / times[1]

    def check(self) -> Optional[str]:
        """Judge the window when N new request-steps have arrived; returns the line it logged."""
        if self.window <= 0 or self.since_check < self.window:
            return None
        self.since_check = 0
        accept, break_even = self.accept_length, self.break_even
        if break_even is None:
            return None
        if accept >= break_even:
            self.below = False
            return None
        if self.below:
            return None
        self.below = True
        times = self.mean_times
        how = ("set by SGLANG_EAGLE3_EXT_BREAK_EVEN" if self.fixed_break_even is not None else
               f"estimated as (draft {times[0] * 1e3:.2f} ms + verify {times[1] * 1e3:.2f} ms) "
               f"/ verify per step")
        line = (f"sglang-eagle3-ext: speculation is not paying off: accept length {accept:.2f} over "
                f"the last {len(self.accepts)} request-steps is below the break-even "
                f"{break_even:.2f} ({how}); decoding without a draft would likely be faster. "
                f"Check the draft with `python -m sglang_eagle3_ext check`, or serve without "
                f"speculative decoding for this traffic.")
        logger.warning(line)
        return line
