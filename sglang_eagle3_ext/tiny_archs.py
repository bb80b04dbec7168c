"""Tiny random targets of every supported architecture, loadable by transformers and SGLang.

Each folder gets config.json + model.safetensors (written by transformers' own model class, so
`AutoModelForCausalLM.from_pretrained` loads it) and the shared tiny tokenizer of tiny_models.
Weights: float32, matrices ~ normal(0, 0.2) like tiny_models (sharp, varied logits); norms stay 1,
router biases 0. 4 layers so EAGLE-3 aux ids [0, 1, 2] are distinct.

    build_target("glm4_moe", "/tmp/glm4-moe-tiny")
"""

from __future__ import annotations

import json
import os

from .tiny_models import build_qwen2_target, build_tokenizer

ARCHS = ("qwen2", "llama", "glm4_moe", "glm4_moe_lite", "glm_moe_dsa", "deepseek_v3", "granite")

_COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
               max_position_embeddings=1024, tie_word_embeddings=False)

# MoE part shared by the GLM MoE configs: 8 routed experts, top-2, one shared expert, layer 0 dense.
_MOE = dict(n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, moe_intermediate_size=32,
            first_k_dense_replace=1, n_group=1, topk_group=1, norm_topk_prob=True,
            routed_scaling_factor=1.0)

# MLA part (GLM-4.7-Flash / GLM-5.1 shapes, scaled down). The latent+rope split must be one SGLang's
# Triton decode kernel knows: kv_lora_rank + qk_rope_head_dim = 576 (512+64, the real models) or
# 288 (256+32); any other split needs next_pow2(kv_lora_rank + rope) == next_pow2(kv_lora_rank),
# else decode fails in _fwd_grouped_kernel_stage1 ("incompatible dimensions", v = trans(k)).
_MLA = dict(num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=256, qk_rope_head_dim=32,
            qk_nope_head_dim=32, v_head_dim=32)


def _config(arch: str, vocab: int, eos: int, rope_scaling: bool):
    import transformers as tf

    base = dict(_COMMON, vocab_size=vocab, eos_token_id=eos, bos_token_id=eos, pad_token_id=eos,
                rms_norm_eps=1e-6)
    if arch == "llama":
        rope = {"rope_type": "default", "rope_theta": 500000.0}
        if rope_scaling:  # Llama-3.1 style frequency scaling
            rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64}
        return tf.LlamaConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                              rope_parameters=rope, **base), tf.LlamaForCausalLM
    if arch == "granite":
        # Llama-style, but SGLang has no EAGLE-3 adapter for it: the case of our hooks adapter.
        # muP multipliers away from 1, so a scaling the hooks missed would show.
        return tf.GraniteConfig(num_attention_heads=4, num_key_value_heads=2,
                                embedding_multiplier=2.0, residual_multiplier=0.5,
                                attention_multiplier=0.25, logits_scaling=1.0,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                **base), tf.GraniteForCausalLM
    if arch == "glm4_moe":
        # GLM-4.7: GQA + partial rotary (0.5), attention bias, no qk-norm.
        return tf.Glm4MoeConfig(num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                attention_bias=True, use_qk_norm=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                 "partial_rotary_factor": 0.5},
                                **_MOE, **base), tf.Glm4MoeForCausalLM
    if arch == "glm4_moe_lite":
        # transformers 5.x dropped first_k_dense_replace from this config (mlp_layer_types
        # instead) but SGLang's glm4_moe_lite.py reads it, and GLM-4.7-Flash's config.json has it:
        # pass both (an unknown key is kept as an attribute and saved).
        # q_lora_rank set, as in GLM-4.7-Flash (768): with None (a plain q_proj) SGLang 0.5.23's
        # Glm4MoeLite loader maps q_proj onto a qkv_proj it does not have and silently drops it.
        return tf.Glm4MoeLiteConfig(q_lora_rank=32, rope_interleave=True,
                                    mlp_layer_types=["dense"] + ["sparse"] * 3,
                                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                    **_MLA, **_MOE, **base), tf.Glm4MoeLiteForCausalLM
    if arch == "glm_moe_dsa":
        # GLM-5.1: MLA with q LoRA + DSA indexer. index_topk >= any test sequence: the sparse
        # top-k then keeps every causal position, i.e. the math equals dense MLA.
        return tf.GlmMoeDsaConfig(q_lora_rank=32, index_topk=2048, index_head_dim=32,
                                  index_n_heads=4,
                                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                  **_MLA, **_MOE, **base), tf.GlmMoeDsaForCausalLM
    if arch == "deepseek_v3":
        # GLM-5.1 without its DSA indexer: SGLang serves GlmMoeDsaForCausalLM with this very class
        # (DeepseekV2ForCausalLM), so this is the closest form of GLM-5.1 that runs on a CPU.
        # transformers 5 dropped fields SGLang's DeepseekV2 reads (DeepSeek-V3's config.json has
        # them): passed through as extra attributes, with V3's values.
        return tf.DeepseekV3Config(q_lora_rank=32, rope_interleave=True, moe_layer_freq=1,
                                   topk_method="noaux_tc", scoring_func="sigmoid",
                                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                                   **_MLA, **_MOE, **base), tf.DeepseekV3ForCausalLM
    raise ValueError(f"unknown arch {arch!r}: one of {ARCHS}")


def build_target(arch: str, out_dir: str, seed: int = 0, rope_scaling: bool = False,
                 **config_overrides) -> dict:
    """A tiny random float32 target of `arch` in out_dir with the tiny tokenizer; returns config.json.
    config_overrides replace config fields (e.g. q_lora_rank=None for a plain q_proj)."""
    if arch == "qwen2":
        return build_qwen2_target(out_dir, kind="random", seed=seed)
    import torch

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(out_dir)
    config, cls = _config(arch, len(tokenizer), tokenizer.eos_token_id, rope_scaling)
    config.torch_dtype = "float32"
    for key, value in config_overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = cls(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:  # larger than HF's init: sharper, more varied logits
                p.normal_(0.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    model.save_pretrained(out_dir, safe_serialization=True)
    return json.load(open(os.path.join(out_dir, "config.json")))


if __name__ == "__main__":  # python -m sglang_eagle3_ext.tiny_archs ARCH DIR
    import sys

    print(json.dumps(build_target(sys.argv[1], sys.argv[2]), indent=1))
