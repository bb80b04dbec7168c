"""Run the acceptance self-check (sglang_eagle3_ext.selfcheck) right after SGLang's server warmup.

Hook points, found by feature:
* `http_server._wait_and_warmup(..., execute_warmup_func=...)`: the warmup thread's entry. We
  hand it a warmup function that runs SGLang's own warmup, then our probes; the thread looks the
  name up in the module when the server starts, so replacing the module attribute is enough.
  Only the HTTP server process imports http_server; we patch it when it is imported rather than
  import it (~1 s) in every scheduler and engine process.
* `Engine.__init__` (sgl.Engine / sgl.LLM): the same probes through engine.generate once the
  engine is up. SGLang loads plugins from inside Engine.__init__, too late to wrap the first
  engine, so the bootstrap (import_hook, on `import sglang`) calls watch_engine() as well.
* `TokenizerManager.get_internal_state`: adds the result to /get_server_info's internal_states.
"""

from __future__ import annotations

import inspect
import logging
import sys

from .base import NotApplicable, import_or_skip, patch_when_imported, wrap_method

logger = logging.getLogger("sglang_eagle3_ext")

HTTP_SERVER = "sglang.srt.entrypoints.http_server"
ENGINE = "sglang.srt.entrypoints.engine"


def _with_selfcheck(execute_warmup, http_server):
    def execute_warmup_then_selfcheck(server_args, *args, **kwargs):
        from sglang_eagle3_ext.selfcheck import run

        ok = execute_warmup(server_args, *args, **kwargs)
        manager = getattr(http_server.get_global_state(), "tokenizer_manager", None)
        status = getattr(manager, "server_status", None)
        if not ok or status is None or status != type(status).Up:
            return ok
        manager.server_status = type(status).Starting  # /health: 503 until the probes are judged
        try:
            run(server_args, manager)
        finally:
            manager.server_status = type(status).Up
        return ok

    return execute_warmup_then_selfcheck


def patch_http_server(http_server) -> None:
    warmup = getattr(http_server, "_wait_and_warmup", None)
    if warmup is None or "execute_warmup_func" not in inspect.signature(warmup).parameters:
        raise NotApplicable("http_server._wait_and_warmup(execute_warmup_func=...) not found")
    if not hasattr(http_server, "get_global_state"):
        raise NotApplicable("http_server has no get_global_state (the tokenizer manager)")
    signature = inspect.signature(warmup)

    def make_warmup(original):
        def _wait_and_warmup(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments["execute_warmup_func"] = _with_selfcheck(
                bound.arguments["execute_warmup_func"], http_server)
            return original(*bound.args, **bound.kwargs)

        return _wait_and_warmup

    wrap_method(http_server, "_wait_and_warmup", make_warmup)


def patch_engine(engine_module) -> None:
    engine_cls = getattr(engine_module, "Engine", None)
    if engine_cls is None or not hasattr(engine_cls, "generate"):
        logger.info("sglang-eagle3-ext: no offline-engine self-check: %s.Engine.generate not found",
                    ENGINE)
        return

    def make_init(original):
        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            from sglang_eagle3_ext.selfcheck import run_for_engine

            run_for_engine(self)

        return __init__

    wrap_method(engine_cls, "__init__", make_init)


def watch_engine() -> None:
    """Wrap Engine.__init__ now or when the engine module is imported (idempotent)."""
    from .base import disabled

    if "selfcheck" in disabled():
        return
    if ENGINE in sys.modules:
        patch_engine(sys.modules[ENGINE])
    else:
        patch_when_imported(ENGINE, patch_engine)


def _patch_on_import(module) -> None:
    try:
        patch_http_server(module)
    except NotApplicable as e:
        logger.info("sglang-eagle3-ext: patch selfcheck not applied: %s", e)


def apply() -> str:
    manager = import_or_skip("sglang.srt.managers.tokenizer_manager").TokenizerManager
    if not inspect.iscoroutinefunction(getattr(manager, "get_internal_state", None)):
        raise NotApplicable("TokenizerManager.get_internal_state is not async")
    if HTTP_SERVER in sys.modules:
        patch_http_server(sys.modules[HTTP_SERVER])
        when = "now"
    else:
        patch_when_imported(HTTP_SERVER, _patch_on_import)
        when = "when http_server is imported"
    watch_engine()

    def make_state(original):
        async def get_internal_state(self, *args, **kwargs):
            from sglang_eagle3_ext.selfcheck import RESULT

            states = await original(self, *args, **kwargs)
            for state in states:
                if isinstance(state, dict):
                    state.setdefault("eagle3_ext", {})["selfcheck"] = dict(RESULT)
            return states

        return get_internal_state

    wrap_method(manager, "get_internal_state", make_state)
    return (f"greedy probes after SGLang's warmup (patched {when}) and after sgl.Engine starts; "
            f"result in /get_server_info")
