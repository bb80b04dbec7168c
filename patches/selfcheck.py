"""Run the acceptance self-check (sglang_eagle3_ext.selfcheck) right after SGLang's server warmup.

Three patches, each all or nothing:
* selfcheck.http: `http_server._wait_and_warmup(..., execute_warmup_func=...)`, the warmup thread's
  entry. We hand it a warmup function that runs SGLang's own warmup, then our probes; the thread
  looks the name up in the module when the server starts, so replacing the module attribute is
  enough. Deferred: only the HTTP server process imports http_server (~1 s).
* selfcheck.engine: `Engine.__init__` (sgl.Engine / sgl.LLM): the same probes through
  engine.generate once the engine is up. SGLang loads plugins from inside Engine.__init__, too late
  to wrap the first engine, so the bootstrap (import_hook, on `import sglang`) runs this patch too.
* selfcheck.state: `TokenizerManager.get_internal_state` adds the result to /get_server_info.
With SGLANG_EAGLE3_EXT_SELFCHECK=off they still apply: the check then records "off" and sends nothing.
"""

from __future__ import annotations

import inspect

from .base import NotApplicable, Patch, Target

HTTP_SERVER = "sglang.srt.entrypoints.http_server"
ENGINE = "sglang.srt.entrypoints.engine"
MANAGER = "sglang.srt.managers.tokenizer_manager:TokenizerManager.get_internal_state"


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


def plan_http(p) -> str:
    http_server = p.module
    p.get(f"{HTTP_SERVER}:get_global_state")
    signature = inspect.signature(p.get(f"{HTTP_SERVER}:_wait_and_warmup"))

    def make_warmup(original):
        def _wait_and_warmup(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments["execute_warmup_func"] = _with_selfcheck(
                bound.arguments["execute_warmup_func"], http_server)
            return original(*bound.args, **bound.kwargs)

        return _wait_and_warmup

    p.wrap(f"{HTTP_SERVER}:_wait_and_warmup", make_warmup)
    return "greedy probes after SGLang's server warmup"


def _make_init(original):
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        from sglang_eagle3_ext.selfcheck import run_for_engine

        run_for_engine(self)

    return __init__


def plan_engine(p) -> str:
    p.get(f"{ENGINE}:Engine.generate")
    p.wrap(f"{ENGINE}:Engine.__init__", _make_init)
    return "greedy probes when sgl.Engine / sgl.LLM has started"


def _make_state(original):
    async def get_internal_state(self, *args, **kwargs):
        from sglang_eagle3_ext.state import STATE

        states = await original(self, *args, **kwargs)
        for state in states:
            if isinstance(state, dict):
                state.setdefault("eagle3_ext", {})["selfcheck"] = dict(STATE.selfcheck)
        return states

    return get_internal_state


def plan_state(p) -> str:
    if not inspect.iscoroutinefunction(p.get(MANAGER)):
        raise NotApplicable("TokenizerManager.get_internal_state is not async")
    p.wrap(MANAGER, _make_state)
    return "self-check result in /get_server_info"


PATCHES = [
    Patch("selfcheck.http", "greedy acceptance probes after the HTTP server's warmup", plan_http,
          on_import=HTTP_SERVER,
          targets=[Target(f"{HTTP_SERVER}:_wait_and_warmup", params=("execute_warmup_func",)),
                   Target(f"{HTTP_SERVER}:get_global_state", "read")]),
    Patch("selfcheck.engine", "greedy acceptance probes when sgl.Engine / sgl.LLM starts", plan_engine,
          on_import=ENGINE,
          targets=[Target(f"{ENGINE}:Engine.__init__"), Target(f"{ENGINE}:Engine.generate", "read")]),
    Patch("selfcheck.state", "self-check result in /get_server_info", plan_state,
          targets=[Target(MANAGER)]),
]
