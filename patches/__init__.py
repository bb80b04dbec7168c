"""Every patch this plugin applies to SGLang, in order. One file per SGLang seam; each file declares
its Patch(es) next to the code (see base.py for the contract)."""

from sglang_eagle3_ext.errors import Eagle3ConfigError
from sglang_eagle3_ext.state import STATE

from . import (cpu_cache_locs, cpu_draft_embed, cpu_rotary, cpu_server_args, draft_checks, draft_dtype,
               eagle3_capture, eagle_sample, fp8_moe_shards, llm_alias, mla_q_proj, server_info, tree_ops,
               triton_verify_attention)
from . import batch_result_metrics, metrics_setup, openai_stream_logprobs, warmup_selfcheck
from .base import APPLIED, FAILED, PENDING, SKIPPED, Patch  # noqa: F401

ALL_PATCHES: list = [
    llm_alias.PATCH,
    draft_checks.PATCH,
    cpu_rotary.PATCH,
    cpu_cache_locs.PATCH,
    *cpu_server_args.PATCHES,
    cpu_draft_embed.PATCH,
    mla_q_proj.PATCH,
    *eagle3_capture.patches(),
    draft_dtype.PATCH,
    tree_ops.PATCH,
    eagle_sample.PATCH,
    triton_verify_attention.PATCH,
    *fp8_moe_shards.PATCHES,
    server_info.PATCH,
    batch_result_metrics.PATCH,
    metrics_setup.PATCH,
    *warmup_selfcheck.PATCHES,
    openai_stream_logprobs.PATCH,
]
BY_NAME = {p.name: p for p in ALL_PATCHES}
STATE.patches[:] = ALL_PATCHES  # /get_server_info lists their statuses (state.py imports no patch)


def groups() -> set:
    """Names SGLANG_EAGLE3_EXT_DISABLE accepts: each patch, and a family (eagle3_capture, ...)."""
    return set(BY_NAME) | {n.split(".")[0] for n in BY_NAME}


def check_settings() -> None:
    """Parse every setting now (an invalid one raises Eagle3ConfigError naming it)."""
    from sglang_eagle3_ext.settings import settings, unknown_variables

    chosen = settings()
    unknown = [n for n in chosen.disable if n not in groups()]
    if unknown:
        raise Eagle3ConfigError(f"SGLANG_EAGLE3_EXT_DISABLE names unknown patch(es) {unknown}; "
                                f"known: {', '.join(sorted(groups()))}")
    typos = unknown_variables()
    if typos:
        raise Eagle3ConfigError(f"unknown setting(s) {typos}: `python -m sglang_eagle3_ext doctor` lists "
                                f"the SGLANG_EAGLE3_EXT_* variables there are")


def apply_all() -> dict:
    """Apply each patch once (deferred ones become pending); returns {name: status}."""
    check_settings()
    return {p.name: p.run() for p in ALL_PATCHES}


def revert_all() -> None:
    for p in reversed(ALL_PATCHES):
        p.revert()
