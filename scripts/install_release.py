"""Layer another SGLang release over ./.venv for the release smoke (tests/test_releases.py).

A full venv per release costs minutes and ~6 GB; instead `.sglang-X/` holds only SGLang X
(`--no-deps`) and the packages whose version X requires differently from ./.venv's (as pip
resolves them against the venv: e.g. transformers, and the tokenizers that transformers needs).
Run Python with `PYTHONPATH=.sglang-X` (`layer_env`) and that release is the one imported and
the one importlib.metadata reports; everything else, this plugin included, comes from the venv.

    .venv/bin/python scripts/install_release.py            # every release in SMOKE_RELEASES
    .venv/bin/python scripts/install_release.py 0.5.10     # one release
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 0.5.16: the GPU machine's release. 0.5.13: an older one whose CPU gaps the plugin bridges.
SMOKE_RELEASES = ("0.5.16", "0.5.13")
# The venv's torch stays: this machine has no other build, and the layers exist to reuse it.
KEEP_FROM_VENV = {"torch", "torchvision", "torchaudio"}
DONE = ".complete"


def layer_dir(version: str) -> str:
    return os.path.join(ROOT, f".sglang-{version}")


def layer_env(version: str, env=None) -> dict:
    """os.environ (or env) with the layer first on PYTHONPATH; subprocesses inherit it."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (layer_dir(version), env.get("PYTHONPATH")) if p)
    return env


def pip(*args: str) -> None:
    # pip's noise here: ignored local index paths, and sglang's CUDA-only requirements we skip on purpose
    out = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if not line.startswith("WARNING: Location"):
            print(line, file=sys.stderr)
    if out.returncode:
        raise SystemExit(f"pip {' '.join(args)} failed (exit {out.returncode})")


def unmet_requirements(layer: str) -> list:
    """SGLang's requirements (in `layer`) that the venv has installed in a version they reject."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    (dist,) = md.distributions(name="sglang", path=[layer])
    unmet = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)  # the venv's, not the layer's: the layer is not on sys.path
        except md.PackageNotFoundError:
            continue  # not used on CPU (CUDA kernels, flashinfer, ...): the venv leaves it out too
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            if req.name.lower() in KEEP_FROM_VENV:
                print(f"  keeping the venv's {req.name} {have} (sglang {dist.version} asks {req.specifier})")
            else:
                unmet.append(f"{req.name}{req.specifier}")
    return unmet


def drop_scripts(target: str) -> None:
    """Console scripts: they name the venv's interpreter anyway, and a second --target install
    into the same folder warns about them."""
    shutil.rmtree(os.path.join(target, "bin"), ignore_errors=True)


def install(version: str) -> float:
    """Build .sglang-<version> unless it is complete already; returns seconds spent."""
    target = layer_dir(version)
    if os.path.exists(os.path.join(target, DONE)):
        return 0.0
    start = time.perf_counter()
    work = tempfile.mkdtemp(prefix=f".sglang-{version}.", dir=ROOT)
    try:
        pip("install", "-q", "--no-deps", "--no-compile", "--target", work, f"sglang=={version}")
        drop_scripts(work)
        unmet = unmet_requirements(work)
        if unmet:
            report = os.path.join(work, "resolve.json")
            # What pip would change in the venv to meet them (their own requirements included)...
            pip("install", "-q", "--dry-run", "--report", report, *unmet)
            with open(report) as f:
                changes = [f"{i['metadata']['name']}=={i['metadata']['version']}"
                           for i in json.load(f)["install"]]
            os.remove(report)
            # ...goes into the layer instead, so the venv itself stays as it is.
            pip("install", "-q", "--no-deps", "--no-compile", "--target", work, *changes)
            drop_scripts(work)
            print(f"  sglang {version}: layered " + ", ".join(changes))
        open(os.path.join(work, DONE), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.rename(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - start


def main(argv) -> int:
    for version in argv or SMOKE_RELEASES:
        took = install(version)
        print(f"sglang {version} layered in {os.path.relpath(layer_dir(version), ROOT)}"
              + (f" ({took:.0f} s)" if took else " (already there)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
