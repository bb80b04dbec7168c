"""A second engine with metrics in one process: SGLang's metrics setup made repeatable.

A script or notebook that makes `sgl.Engine(enable_metrics=True)` after another one (shut down)
in the same process fails twice in SGLang's own code (0.5.23; measured with the plugin loaded,
both failures raised by SGLang's lines):

* `sglang.srt.utils.common.set_prometheus_multiproc_dir` makes PROMETHEUS_MULTIPROC_DIR a
  TemporaryDirectory it keeps in a module global. On the second call the variable is set (by the
  first), so it makes a subdirectory of it and replaces the global: the first directory is
  deleted with the new one inside, the variable points nowhere, and the new engine's scheduler
  dies with `FileNotFoundError: .../counter_<pid>.db`. Where the directory in the variable is the
  one SGLang made, the wrapper clears the variable first, so the call makes a fresh one; the old
  directory object is kept alive (an engine still running keeps its files) until the process ends.
  A directory the user set is left as SGLang handles it.
* `sglang.srt.managers.tokenizer_manager.TokenizerManager.init_metric_collector_watchdog` creates
  the engine process's collectors in prometheus_client's default registry; the second time it
  raises `DuplicateTimeseries: {'sglang:startup_time_seconds'}`. The wrapper records the
  collectors each call registers and unregisters the previous call's first: the newest engine
  owns the names (its values live in the multiprocess files that /metrics reads).
"""

import logging
import os
import sys

from .base import NotApplicable, Patch, Target

ENV = "PROMETHEUS_MULTIPROC_DIR"
COMMON = "sglang.srt.utils.common"
SET_DIR = f"{COMMON}:set_prometheus_multiproc_dir"
DIR_GLOBAL = f"{COMMON}:prometheus_multiproc_dir"
COLLECTORS = "sglang.srt.managers.tokenizer_manager:TokenizerManager.init_metric_collector_watchdog"
# prometheus_client's own bookkeeping: collector -> its names (no public way to list collectors)
REGISTERED = "prometheus_client.registry:REGISTRY._collector_to_names"

_kept_dirs: list = []  # SGLang's earlier TemporaryDirectory objects: deleted at process exit
_owned: list = []  # the collectors the last init_metric_collector_watchdog registered
_warned: list = []
logger = logging.getLogger("sglang_eagle3_ext")


def _registry():
    """prometheus_client's default registry, or None where its bookkeeping is not the dict we read.

    Imported at call time, never in the plan: prometheus_client picks its multiprocess value class
    when first imported, and SGLang sets PROMETHEUS_MULTIPROC_DIR only just before it creates
    collectors; an earlier import makes every metric of the process in-memory (gone from /metrics)."""
    from prometheus_client.registry import REGISTRY

    return REGISTRY if isinstance(getattr(REGISTRY, "_collector_to_names", None), dict) else None


def plan(p) -> str:
    common = p.load(COMMON)
    if "prometheus_client" in sys.modules and _registry() is None:
        raise NotApplicable(f"{REGISTERED} is not the dict this patch reads")
    p.params(SET_DIR, ())
    p.params(COLLECTORS, ())

    def make_set_dir(original):
        def set_prometheus_multiproc_dir(*args, **kwargs):
            made = getattr(common, "prometheus_multiproc_dir", None)
            if made is not None and os.environ.get(ENV) == getattr(made, "name", None):
                _kept_dirs.append(made)
                del os.environ[ENV]
            return original(*args, **kwargs)

        return set_prometheus_multiproc_dir

    def make_collectors(original):
        def init_metric_collector_watchdog(self, *args, **kwargs):
            registry = _registry()
            if registry is None:  # another prometheus_client: SGLang's behaviour, said once
                if not _warned:
                    _warned.append(True)
                    logger.warning("sglang-eagle3-ext: metrics_setup: %s is not a dict in this "
                                   "prometheus_client; a second engine with metrics may fail", REGISTERED)
                return original(self, *args, **kwargs)
            previous, _owned[:] = list(_owned), []  # engines are built one at a time
            for collector in previous:
                try:
                    registry.unregister(collector)
                except KeyError:  # unregistered by someone else already
                    pass
            before = set(registry._collector_to_names)
            try:
                return original(self, *args, **kwargs)
            finally:
                _owned.extend(c for c in list(registry._collector_to_names) if c not in before)

        return init_metric_collector_watchdog

    p.wrap(SET_DIR, make_set_dir)
    p.wrap(COLLECTORS, make_collectors)
    return "a later sgl.Engine with metrics gets its own multiprocess directory and takes over the collectors"


PATCH = Patch("metrics_setup", "a second sgl.Engine with metrics in one process starts (fresh "
              "PROMETHEUS_MULTIPROC_DIR, no DuplicateTimeseries)", plan,
              on_import="sglang.srt.managers.tokenizer_manager",
              targets=[Target(SET_DIR, params=()), Target(COLLECTORS, params=()),
                       # only annotated until the first call assigns it: read then, optional here
                       Target(DIR_GLOBAL, kind="read", optional=True),
                       # read at call time (see _registry), so not resolved by the probe
                       Target(REGISTERED, kind="read", optional=True)])
