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
