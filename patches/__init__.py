"""Every patch this plugin applies to SGLang, in order. One file per concern."""

from . import (batch_result_metrics, cpu_cache_locs, cpu_rotary, draft_checks, draft_dtype,
               eagle3_capture, fp8_moe_shards, llm_alias, mla_q_proj, server_info, tree_attention,
               tree_ops, warmup_selfcheck)
from .base import Patch

ALL_PATCHES = [
    Patch("llm_alias", "sgl.LLM = offline Engine (accepts model=)", llm_alias.apply),
    Patch("draft_checks", "clear startup errors: missing / non-EAGLE-3 / ill-fitting draft",
          draft_checks.apply),
    Patch("cpu_rotary", "rotary embedding without CUDA/vllm -> forward_native", cpu_rotary.apply),
    Patch("cpu_cache_locs", "verify KV slots without an accelerator (EAGLE topk > 1)",
          cpu_cache_locs.apply),
    Patch("mla_q_proj", "Glm4MoeLite with q_lora_rank null: load q_proj (SGLang drops it)",
          mla_q_proj.apply),
    Patch("eagle3_capture", "one aux-layer-id rule on every target, final layer too, logged per mode",
          eagle3_capture.apply),
    Patch("draft_dtype", "target states cast to the draft's dtype (bf16/FP8 target, fp16/fp32 draft)",
          draft_dtype.apply),
    Patch("tree_ops", "EAGLE tree build/verify where sgl-kernel's ops are missing", tree_ops.apply),
    Patch("tree_attention", "target-verify attention on our Triton tree kernel (opt-in)",
          tree_attention.apply),
    Patch("fp8_moe_shards", "block-FP8 MoE at any TP shard; FP8 MoE forward on our Triton kernel",
          fp8_moe_shards.apply),
    Patch("server_info", "plugin state in /get_server_info from each scheduler",
          lambda: server_info.apply(statuses)),
    Patch("spec_metrics", "sglang:eagle3_* acceptance/timing metrics on /metrics, live break-even guard",
          batch_result_metrics.apply),
    Patch("selfcheck", "greedy acceptance probes after warmup: warn / strict / off",
          warmup_selfcheck.apply),
]


def statuses() -> dict:
    """{patch name: status} in this process (server_info reports it)."""
    return {p.name: p.status for p in ALL_PATCHES}


def apply_all() -> dict:
    """Apply each patch once; returns {name: status}."""
    return {p.name: p.run() for p in ALL_PATCHES}
