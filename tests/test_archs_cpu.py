"""Every target architecture on real SGLang (CPU): greedy output equal to transformers' greedy.

Each folder is built by tiny_archs.build_target (transformers' own classes: HF loads it) and served
by SGLang through sgl.LLM with the CPU arguments. One engine start per architecture (~25-40 s).
"""

import pytest

from hf_reference import hf_greedy
from isolated import run_engine
from sglang_eagle3_ext.tiny_archs import build_target

PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NEW_TOKENS = 12

DSA_CPU = (
    "SGLang 0.5.23 cannot start a DSA model without CUDA: handle_model_specific_adjustments calls "
    "torch.cuda.get_device_capability() for every non-NPU/XPU DSA config ('Found no NVIDIA driver')"
)

ARCHS = [
    pytest.param("llama", id="llama"),
    pytest.param("llama3_rope", id="llama-rope-llama3"),
    pytest.param("glm4_moe", id="glm4_moe"),
    pytest.param("glm4_moe_lite", id="glm4_moe_lite"),
    pytest.param("glm4_moe_lite_plain_q", id="glm4_moe_lite-q_lora_rank-null"),  # patch mla_q_proj
    # GLM-5.1 minus its DSA indexer: the DeepseekV2ForCausalLM code GlmMoeDsaForCausalLM runs on
    pytest.param("deepseek_v3", id="deepseek_v3"),
    pytest.param("glm_moe_dsa", id="glm_moe_dsa",
                 marks=pytest.mark.xfail(strict=True, reason=DSA_CPU, raises=RuntimeError)),
]


@pytest.mark.parametrize("arch", ARCHS)
def test_sglang_greedy_equals_transformers(arch, tmp_path):
    folder = str(tmp_path / arch)
    if arch == "llama3_rope":
        build_target("llama", folder, rope_scaling=True)
    elif arch == "glm4_moe_lite_plain_q":
        build_target("glm4_moe_lite", folder, q_lora_rank=None)
    else:
        build_target(arch, folder)
    expected = hf_greedy(folder, PROMPTS, NEW_TOKENS)
    got = run_engine(folder, None, prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
                     sampling={"ignore_eos": True})["output_ids"]
    assert got == expected
