"""Load a plain q_proj into SGLang's Glm4MoeLite (GLM-4.7-Flash layout with q_lora_rank null).

SGLang 0.5.23's `sglang.srt.models.glm4_moe_lite.Glm4MoeLiteForCausalLM.load_weights` keeps Glm4Moe's
stacked mapping ("qkv_proj", "q_proj", "q"), but this MLA model has no qkv_proj: a checkpoint
name `...self_attn.q_proj.weight` is renamed to `...qkv_proj.weight`, found in no parameter and
skipped without a word. With q_lora_rank null (no q_a_proj/q_b_proj) the query projection then
stays uninitialised and every token differs from transformers. GLM-4.7-Flash itself sets
q_lora_rank (768) and is not affected. We hand those weights to the q_proj parameter ourselves and
pass the rest through; only models that have a q_proj and no qkv_proj parameter are touched.
"""

from .base import Patch, Target

MODULE = "sglang.srt.models.glm4_moe_lite"
Q_PROJ = ".self_attn.q_proj."


def _make_load_weights(original):
    def load_weights(self, weights, *args, **kwargs):
        params = dict(self.named_parameters())
        if any(".qkv_proj." in n for n in params) or not any(Q_PROJ in n for n in params):
            return original(self, weights, *args, **kwargs)
        from sglang.srt.model_loader.weight_utils import default_weight_loader

        def others():
            for name, tensor in weights:
                if Q_PROJ in name and name in params:
                    param = params[name]
                    getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                else:
                    yield name, tensor

        return original(self, others(), *args, **kwargs)

    return load_weights


def plan(p) -> str:
    # The wrapper acts only on a model with a q_proj and no qkv_proj parameter (decided per model,
    # by its parameters), so it is safe wherever the loader exists.
    p.wrap(f"{MODULE}:Glm4MoeLiteForCausalLM.load_weights", _make_load_weights)
    return "Glm4MoeLiteForCausalLM.load_weights loads a plain q_proj (q_lora_rank null)"


PATCH = Patch("mla_q_proj", "Glm4MoeLite with q_lora_rank null: load q_proj (SGLang drops it)", plan,
              on_import=MODULE,
              targets=[Target(f"{MODULE}:Glm4MoeLiteForCausalLM.load_weights", params=("weights",),
                              ordered=True)])
