"""Start a real `python -m sglang.launch_server` on 127.0.0.1 for a test, and stop it."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, EAGLE3_ARGS, as_cli

STARTUP_S = 600  # a CPU server starts in ~30 s alone; a loaded 2-core machine needs far more


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, target, draft=None, log_path=None, extra=(), env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = dict(CPU_ENGINE_ARGS, **(dict(EAGLE3_ARGS, speculative_draft_model_path=draft) if draft else {}))
        self.cmd = [sys.executable, "-m", "sglang.launch_server", "--model-path", target,
                    "--host", "127.0.0.1", "--port", str(self.port), "--enable-metrics",
                    "--decode-log-interval", "1", *as_cli(args), *extra]
        self.log_path = log_path
        self.env = {**os.environ, "TRITON_INTERPRET": "1", **(env or {})}
        self.proc = None
        self.startup_s = None  # launch to first healthy /health

    def __enter__(self):
        log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd="/",
                                     env=self.env, start_new_session=True)
        started = time.monotonic()
        deadline = started + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        self.startup_s = time.monotonic() - started
                        return self
            except OSError:
                time.sleep(1)
        self.__exit__()
        raise TimeoutError(f"server not healthy in {STARTUP_S} s; log: {self.log_path}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return r.read().decode()
