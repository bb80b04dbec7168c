"""Start a real `python -m sglang.launch_server` on 127.0.0.1 for a test, and stop it."""

import os
import sys

from sglang_eagle3_ext.bench.loopback_server import LoopbackServer
from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS, as_cli

STARTUP_S = 600  # a CPU server starts in ~30 s alone; a loaded 2-core machine needs far more


def server_env(extra=None) -> dict:
    return {**os.environ, "TRITON_INTERPRET": "1", **(extra or {})}


class Server(LoopbackServer):
    """The CPU server of the tests: target (and EAGLE-3 draft) with cpu_defaults, metrics on.
    cwd "/": the checkout's top-level kernels/ must not shadow anything the server imports."""

    def __init__(self, target, draft=None, log_path=None, extra=(), env=None):
        args = dict(CPU_ENGINE_ARGS, **(dict(EAGLE3_ARGS, speculative_draft_model_path=draft) if draft else {}))
        super().__init__([sys.executable, "-m", "sglang.launch_server", "--model-path", target,
                          "--enable-metrics", "--decode-log-interval", "1", *as_cli(args), *extra],
                         log_path, server_env(env), STARTUP_S, cwd="/")
