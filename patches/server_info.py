"""Report the plugin's state from inside each scheduler: `/get_server_info` -> internal_states[i].

This is how a client proves, from the server side, that the plugin ran in the scheduler process
(where the model, the draft and the tree ops live), not only in the launcher.
"""

import os

from .base import import_or_skip, wrap_method


def plugin_state(statuses) -> dict:
    """statuses() -> {patch name: status}; handed in by patches/__init__.py, which lists them."""
    from .eagle3_capture import CAPTURE_LOG, TARGET_STATUS, UPSTREAM_DIFFERS
    from .tree_attention import CALLS

    return {"pid": os.getpid(),
            "patches": statuses(),
            "aux_capture": CAPTURE_LOG, "aux_targets": TARGET_STATUS,
            "aux_upstream_differs": UPSTREAM_DIFFERS,
            "tree_attention_calls": CALLS}


def apply(statuses) -> str:
    scheduler = import_or_skip("sglang.srt.managers.scheduler")
    cls = scheduler.Scheduler
    if not hasattr(cls, "get_internal_state"):
        from .base import NotApplicable

        raise NotApplicable("Scheduler has no get_internal_state")

    def make(original):
        def get_internal_state(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            state = getattr(out, "internal_state", None)
            if isinstance(state, dict):
                state["eagle3_ext"] = plugin_state(statuses)
            return out

        return get_internal_state

    wrap_method(cls, "get_internal_state", make)
    return "Scheduler.get_internal_state reports eagle3_ext"
