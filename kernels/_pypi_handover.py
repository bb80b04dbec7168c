"""When a checkout's root is on sys.path (python run from the repo root), this folder shadows the
PyPI package `kernels`, which SGLang imports (FA3 loader). Hand the name over to the real one."""

import importlib.machinery
import importlib.util
import os
import sys


def hand_over() -> None:
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != repo_root]
    spec = importlib.machinery.PathFinder.find_spec("kernels", path)
    if spec is None:
        del sys.modules["kernels"]  # not installed: let `import kernels` fail as it would
        raise ImportError("No module named 'kernels' (the repo's kernels/ is sglang_eagle3_ext.kernels)")
    real = importlib.util.module_from_spec(spec)
    sys.modules["kernels"] = real  # the import system returns sys.modules' entry, not this module
    spec.loader.exec_module(real)
