"""The one exception type users see for bad EAGLE-3 input, and how a launcher prints it."""

import sys


class Eagle3ConfigError(ValueError):
    """A draft/target/flag problem found at startup; the message names the problem and the fix."""


def one_line_excepthook(previous):
    """An excepthook that prints an uncaught Eagle3ConfigError as one line (no traceback) and hands
    everything else to `previous`; None if `previous` already is ours."""
    if getattr(previous, "__eagle3_ext__", False):
        return None

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, Eagle3ConfigError):
            sys.stderr.write(f"sglang-eagle3-ext: error: {exc}\n")
            sys.stderr.flush()
        else:
            previous(exc_type, exc, tb)

    hook.__eagle3_ext__ = True
    return hook
