"""Run an SGLang engine in its own process.

When a scheduler fails, SGLang kills the process tree of whoever created the Engine; in-process
that is pytest itself (exit 137, no report). In a child process it becomes a test failure.
"""

import concurrent.futures
import multiprocessing


def run_engine(*args, **kwargs) -> dict:
    from sglang_eagle3_ext import demo

    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        try:
            return pool.submit(demo.run_engine, *args, **kwargs).result(timeout=900)
        except concurrent.futures.process.BrokenProcessPool:
            raise RuntimeError("the SGLang engine died (its scheduler failed): see the log above") from None
