"""Report the plugin's state from inside each scheduler: `/get_server_info` -> internal_states[i].

This is how a client proves, from the server side, that the plugin ran in the scheduler process
(where the model, the draft and the tree ops live), not only in the launcher. SGLang answers from
TP rank 0 only; `tp_ranks` holds every TP rank's own state, gathered by rank_states.
"""

import os

from .base import import_or_skip, wrap_method


def plugin_state() -> dict:
    from . import ALL_PATCHES
    from .eagle3_capture import CAPTURE_LOG, TARGET_STATUS
    from .tree_attention import CALLS

    return {"pid": os.getpid(),
            "patches": {p.name: p.status for p in ALL_PATCHES},
            "aux_capture": CAPTURE_LOG, "aux_targets": TARGET_STATUS,
            "tree_attention_calls": CALLS}


def apply() -> str:
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
                from sglang_eagle3_ext.rank_states import gather

                own = plugin_state()
                state["eagle3_ext"] = dict(own, tp_ranks=gather(own))
            return out

        return get_internal_state

    wrap_method(cls, "get_internal_state", make)
    return "Scheduler.get_internal_state reports eagle3_ext"
