"""The plugin's state in this process, created once: what /get_server_info reports from here.

One object instead of module globals spread over the patches: the aux capture log, which target
classes were adapted, tree-attention calls, the self-check result, and the Prometheus metrics this
process created (prometheus-client refuses a second metric of the same name in one process, which a
second sgl.Engine with metrics would otherwise hit).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field


@dataclass
class PluginState:
    aux_capture: dict = field(default_factory=dict)  # forward mode -> layers captured
    aux_targets: dict = field(default_factory=dict)  # target class -> how it is adapted
    tree_attention_calls: dict = field(default_factory=lambda: {"ran": 0, "fell_back": 0})
    selfcheck: dict = field(default_factory=lambda: {"status": "not run"})
    _metrics: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def metric(self, kind, name: str, documentation: str, labelnames, **kwargs):
        """The Prometheus metric `name` of this process, created on first use (kind: Gauge, ...)."""
        with self._lock:
            found = self._metrics.get(name)
            if found is None:
                found = self._metrics[name] = kind(name, documentation, list(labelnames), **kwargs)
            return found


STATE = PluginState()


def plugin_state() -> dict:
    """This process's plugin state as /get_server_info shows it."""
    from sglang_eagle3_ext.patches import ALL_PATCHES

    return {"pid": os.getpid(),
            "patches": {p.name: p.status for p in ALL_PATCHES},
            "aux_capture": STATE.aux_capture, "aux_targets": STATE.aux_targets,
            "tree_attention_calls": STATE.tree_attention_calls}
