"""Report the plugin's state from inside each scheduler: `/get_server_info` -> internal_states[i].

This is how a client proves, from the server side, that the plugin ran in the scheduler process
(where the model, the draft and the tree ops live), not only in the launcher.
"""

from .base import Patch, Target

TARGET = "sglang.srt.managers.scheduler:Scheduler.get_internal_state"


def _make(original):
    def get_internal_state(self, *args, **kwargs):
        from sglang_eagle3_ext.state import plugin_state

        out = original(self, *args, **kwargs)
        state = getattr(out, "internal_state", None)
        if isinstance(state, dict):
            state["eagle3_ext"] = plugin_state()
        return out

    return get_internal_state


def plan(p) -> str:
    p.wrap(TARGET, _make)
    return "Scheduler.get_internal_state reports eagle3_ext"


PATCH = Patch("server_info", "plugin state in /get_server_info from each scheduler", plan,
              targets=[Target(TARGET)])
