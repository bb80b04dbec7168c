"""Shared fixtures: tiny models built once per session; the Triton interpreter on CPU."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports a Triton kernel

import pytest


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    from sglang_eagle3_ext.tiny_models import build_demo_models

    return build_demo_models(str(tmp_path_factory.mktemp("models")))
