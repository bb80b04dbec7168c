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
