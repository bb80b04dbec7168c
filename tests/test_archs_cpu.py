"""Every target architecture on real SGLang (CPU): greedy output equal to transformers' greedy.

Each folder is built by tiny_archs.build_target (transformers' own classes: HF loads it) and served
by SGLang through sgl.LLM with the CPU arguments, one engine per architecture, one after the other
in one child process (tests/isolated.py: the imports are paid once).
"""

import pytest

from hf_reference import hf_greedy
from isolated import run_engine, run_engines
from sglang_eagle3_ext.tiny_archs import build_target

PROMPTS = ["The capital of France is", "def add(a, b):", "One plus one is"]
NEW_TOKENS = 12

DSA_CPU = (
    "SGLang 0.5.23 cannot start a DSA model without CUDA: handle_model_specific_adjustments calls "
    "torch.cuda.get_device_capability() for every non-NPU/XPU DSA config ('Found no NVIDIA driver')"
)

# case -> (tiny_archs architecture, build_target options)
ARCHS = {
    "llama": ("llama", {}),
    "llama-rope-llama3": ("llama", {"rope_scaling": True}),
    "glm4_moe": ("glm4_moe", {}),
    "glm4_moe_lite": ("glm4_moe_lite", {}),
    "glm4_moe_lite-q_lora_rank-null": ("glm4_moe_lite", {"q_lora_rank": None}),  # patch mla_q_proj
    # GLM-5.1 minus its DSA indexer: the DeepseekV2ForCausalLM code GlmMoeDsaForCausalLM runs on
    "deepseek_v3": ("deepseek_v3", {}),
}


def run_kwargs():
    return dict(prompts=PROMPTS, max_new_tokens=NEW_TOKENS, sampling={"ignore_eos": True})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """{case: (folder, SGLang's greedy token ids)} for every case of ARCHS."""
    root = tmp_path_factory.mktemp("archs")
    folders = {}
    for case, (arch, options) in ARCHS.items():
        folders[case] = str(root / case)
        build_target(arch, folders[case], **options)
    runs = run_engines({case: ((folder, None), run_kwargs()) for case, folder in folders.items()})
    return {case: (folders[case], runs[case]["output_ids"]) for case in ARCHS}


@pytest.mark.parametrize("case", list(ARCHS))
def test_sglang_greedy_equals_transformers(case, served):
    folder, got = served[case]
    assert got == hf_greedy(folder, PROMPTS, NEW_TOKENS)


@pytest.mark.xfail(strict=True, reason=DSA_CPU, raises=RuntimeError)
def test_glm_moe_dsa_greedy_equals_transformers(tmp_path):
    folder = str(tmp_path / "glm_moe_dsa")
    build_target("glm_moe_dsa", folder)
    expected = hf_greedy(folder, PROMPTS, NEW_TOKENS)
    assert run_engine(folder, None, **run_kwargs())["output_ids"] == expected
