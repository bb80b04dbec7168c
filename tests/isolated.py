"""Run SGLang engines in a child process.

When a scheduler fails, SGLang kills the process tree of whoever created the Engine; in-process
that is pytest itself (exit 137, no report). In a child process it becomes a test failure.
`run_engines` starts several engines one after the other in ONE child: the imports are paid once,
and it is what a user's process does when it makes a second `sgl.Engine` (the plugin's state and
metrics must survive that).
"""

import concurrent.futures
import multiprocessing
import os

ENGINE_TIMEOUT_S = 900


def _engines(calls: dict) -> dict:
    from sglang_eagle3_ext import demo

    from prometheus_client import REGISTRY

    out = {}
    for name, (args, kwargs, *env) in calls.items():
        saved = dict(os.environ)
        os.environ.update(*env)  # read by the engine's scheduler process, which inherits it
        try:
            r = demo.run_engine(*args, **kwargs)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        # the Prometheus series this process holds after the engine (SGLang's and ours)
        series = sorted(n for n in REGISTRY._names_to_collectors if n.startswith(("sglang", "eagle3")))
        out[name] = dict(r, pid=os.getpid(), series=series)
    return out


def run_engines(calls: dict) -> dict:
    """{name: (args, kwargs[, env]) of demo.run_engine} -> {name: its result, plus the child's pid
    and the Prometheus series it holds}; env: variables set for that engine only."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(_engines, calls).result(timeout=ENGINE_TIMEOUT_S * len(calls))
        except concurrent.futures.process.BrokenProcessPool:
            raise RuntimeError("an SGLang engine died (its scheduler failed): see the log above") from None


def run_engine(*args, **kwargs) -> dict:
    return run_engines({"run": (args, kwargs)})["run"]
