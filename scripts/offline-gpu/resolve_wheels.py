"""Download the wheels a host lacks for a set of requirements (CPython, manylinux x86_64).

Walks Requires-Dist recursively (extras ignored, markers evaluated for the host's Python),
skipping every distribution the host already has (device_has.txt). The caller's pins win over
transitive ranges. Usage:

    python3 resolve_wheels.py OUT_DIR [--python 3.12] REQUIREMENT...    e.g. 'fastapi' 'openai==2.6.1'

Prints one 'name==version' line per wheel.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import zipfile

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

HERE = os.path.dirname(os.path.abspath(__file__))
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64",
             "manylinux1_x86_64"]


def host_env(python: str) -> dict:
    """Marker environment of a Linux x86_64 CPython `python` (e.g. '3.12')."""
    return dict(default_environment(), python_version=python, python_full_version=python + ".0",
                platform_machine="x86_64", sys_platform="linux", platform_system="Linux", os_name="posix",
                implementation_name="cpython", platform_python_implementation="CPython", extra="")


def read_host_list(path: str) -> dict:
    """device_has.txt -> {canonical distribution name: [top-level import names]}."""
    out = {}
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        name = canonicalize_name(fields[0])
        mods = fields[1].split(",") if len(fields) > 1 else [name.replace("-", "_")]
        out[name] = [m for m in mods if m != "-"]
    return out


def _matching(req: str, out: str) -> list:
    r = Requirement(req)
    name, found = canonicalize_name(r.name), []
    for w in glob.glob(os.path.join(out, "*.whl")):
        wname, version, _, _ = parse_wheel_filename(os.path.basename(w))
        if wname == name and r.specifier.contains(version, prereleases=True):
            found.append((version, w))
    return found


def pip_download(req: str, out: str, python: str) -> str:
    """One wheel (no deps) for the host: a matching one already in `out` (a cache: rebuilds are
    repeatable and need no network), else pip's download. Returns its path."""
    cached = _matching(req, out)
    if cached:
        return max(cached)[1]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", out, str(req)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = "\n".join(l for l in proc.stderr.splitlines() if not l.startswith("WARNING: Location"))
        raise SystemExit(f"pip download {req} failed:\n{tail[-2000:]}")
    found = _matching(req, out)
    if not found:
        raise SystemExit(f"pip download {req}: no matching wheel landed in {out}")
    return max(found)[1]


def requires(wheel: str, env: dict):
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                r = Requirement(line.split(":", 1)[1].strip())
                if r.marker is None or r.marker.evaluate(env):
                    yield r


def resolve(out: str, reqs, python: str, have) -> list:
    """Wheel paths for `reqs` and their missing dependencies (not those in `have`)."""
    os.makedirs(out, exist_ok=True)
    env = host_env(python)
    todo = [Requirement(r) if isinstance(r, str) else r for r in reqs]
    pinned = {canonicalize_name(r.name): r for r in todo}
    seen, wheels = set(), []
    while todo:
        r = todo.pop()
        n = canonicalize_name(r.name)
        r = pinned.get(n, r)
        if n in seen or n in have:
            continue
        seen.add(n)
        w = pip_download(str(r).split(";")[0], out, python)
        wheels.append(w)
        todo += list(requires(w, env))
    return wheels


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("reqs", nargs="+")
    ap.add_argument("--python", default="3.12")
    ap.add_argument("--host-list", default=os.path.join(HERE, "device_has.txt"))
    args = ap.parse_args(argv)
    for w in resolve(args.out, args.reqs, args.python, read_host_list(args.host_list)):
        name, version, _, _ = parse_wheel_filename(os.path.basename(w))
        print(f"{name}=={version}", flush=True)


if __name__ == "__main__":
    main()
