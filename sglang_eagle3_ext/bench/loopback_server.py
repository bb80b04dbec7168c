"""A server process on 127.0.0.1 in its own process group: started, waited for, stopped.

One mechanism for the tests (tests/server.py) and the GPU session's e2e pair (benchmarks/bench_e2e.py):
`with LoopbackServer(cmd, ...) as s:` runs `cmd --host 127.0.0.1 --port PORT`, returns once /health
answers 200 (or raises with the log's tail when the process exits or the time is up), and stops the
whole group on exit (SIGTERM, SIGKILL after 30 s): SGLang's scheduler and detokenizer included.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except (OSError, TypeError):
        return ""


class LoopbackServer:
    def __init__(self, cmd, log_path=None, env=None, timeout_s=600, cwd=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [*cmd, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path, self.env, self.timeout_s, self.cwd = log_path, env, timeout_s, cwd
        self.proc = None
        self.startup_s = None  # launch to the first healthy /health

    def spawned(self) -> None:
        """Called once the process runs, before it is healthy (a subclass records its group)."""

    def __enter__(self):
        log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
                                     env=self.env, start_new_session=True)
        self.spawned()
        while time.monotonic() - started < self.timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode} after "
                                   f"{time.monotonic() - started:.0f} s; log: {self.log_path}\n{tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        self.startup_s = time.monotonic() - started
                        return self
            except OSError:
                pass
            time.sleep(1)
        self.__exit__()
        raise TimeoutError(f"server not healthy after {self.timeout_s} s; log: {self.log_path}\n"
                           f"{tail(self.log_path)}")

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
