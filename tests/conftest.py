"""Shared fixtures: tiny models built once per session; the Triton interpreter on CPU."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports a Triton kernel
# The startup self-check's probes cost ~1 min per server on 2 CPU cores; the tests that check it
# turn it on themselves (tests/test_selfcheck.py, tests/test_spec_metrics.py).
os.environ.setdefault("SGLANG_EAGLE3_EXT_SELFCHECK", "off")
# torch.compile's shared /tmp cache can hold a truncated .so from an interrupted build elsewhere,
# which kills every EAGLE server on its first draft step: compile into this session's own cache.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="eagle3-ext-inductor-")

import pytest

# The files that take longest (pytest --durations of a clean-clone CI run), in that order, first:
# `-n 2 --dist loadfile` hands whole files to the two workers in collection order, and a long file
# taken up last leaves one worker busy while the other idles. The others keep their order after these.
SLOWEST_FIRST = ["test_e2e_engine.py", "test_penalties_e2e.py", "test_releases.py", "test_archs_cpu.py",
                 "test_eagle3_capture.py", "test_selfcheck.py", "test_e2e_server.py", "test_tp2_cpu.py",
                 "test_bench.py", "test_gpu_session.py", "test_draft_dtype.py", "test_penalty_fixup.py",
                 "test_kernels_compile.py", "test_spec_metrics.py"]


def pytest_collection_modifyitems(items):
    here = os.path.dirname(os.path.abspath(__file__))
    stale = [name for name in SLOWEST_FIRST if not os.path.exists(os.path.join(here, name))]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py SLOWEST_FIRST names files that do not exist: {stale}")
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file stays in order


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    from sglang_eagle3_ext.tiny_models import build_demo_models

    return build_demo_models(str(tmp_path_factory.mktemp("models")))


def pinned_sglang() -> str:
    """The SGLang version scripts/install.sh pins (the CI's)."""
    import re

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(here, "scripts", "install.sh")).read()
    return re.search(r"^SGLANG_VERSION=(\S+)", text, re.M).group(1)


def on_pinned_sglang() -> bool:
    import importlib.metadata as md

    return md.version("sglang") == pinned_sglang()


def require_upstream(obj, what: str):
    """An upstream symbol a cross-check compares with: missing on the pinned SGLang is a failure
    (an upgrade moved it and the check would silently stop checking); elsewhere a skip."""
    if obj is None:
        if on_pinned_sglang():
            pytest.fail(f"{what} not found in the pinned SGLang {pinned_sglang()}: update the cross-check")
        pytest.skip(f"this SGLang has no {what}")
    return obj


def import_or_none(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None
