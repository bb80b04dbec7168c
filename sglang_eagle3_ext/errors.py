"""The one exception type users see for bad EAGLE-3 input, and how a launcher prints it."""

import sys


class Eagle3ConfigError(ValueError):
    """A draft/target/flag problem found at startup; the message names the problem and the fix."""


def install_one_line_excepthook() -> None:
    """Uncaught Eagle3ConfigError in a launcher prints one line instead of a traceback."""
    previous = sys.excepthook
    if getattr(previous, "__eagle3_ext__", False):
        return

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, Eagle3ConfigError):
            sys.stderr.write(f"sglang-eagle3-ext: error: {exc}\n")
            sys.stderr.flush()
        else:
            previous(exc_type, exc, tb)

    hook.__eagle3_ext__ = True
    sys.excepthook = hook
