"""Run in a spawn child by test_fp8_moe_sglang.py: real SGLang FusedMoE + Fp8MoEMethod layers on
CPU at simulated TP ranks (SGLang's parallel context stamped, no process group), loaded from a
GLM-4.7-shaped block-FP8 checkpoint through SGLang's own expert mapping and weight loader."""

import os


def _sglang_on_cpu() -> None:
    os.environ["TRITON_INTERPRET"] = "1"
    from sglang.srt.server_args import ServerArgs, set_global_server_args_for_scheduler

    set_global_server_args_for_scheduler(ServerArgs(model_path="dummy", device="cpu"))


def _at_rank(tp, rank):
    """Stamp SGLang's parallel context as TP rank `rank` of `tp`; the block-FP8 quant config."""
    from sglang.srt.layers.quantization.fp8 import Fp8Config
    from sglang.srt.runtime_context import get_parallel

    get_parallel().override_permanently(
        tp_size=tp, tp_rank=rank, attn_tp_size=tp, attn_tp_rank=rank, moe_tp_size=tp,
        moe_tp_rank=rank, moe_ep_size=1, moe_ep_rank=0, tp_group=None)
    return Fp8Config(is_checkpoint_fp8_serialized=True, activation_scheme="dynamic",
                     weight_block_size=[128, 128])


def _unpatched_then_patch(build, rank) -> dict:
    """SGLang's own answer to building rank `rank`, then our patch applied."""
    result = {}
    try:
        build(rank)
        result["unpatched"] = "built"
    except ValueError as e:
        result["unpatched"] = str(e)
    from sglang_eagle3_ext.patches import BY_NAME

    for name in ("fp8_moe_shards", "fp8_moe_kernel"):
        BY_NAME[name].run()
        result[name] = (BY_NAME[name].status, BY_NAME[name].detail)
    result["patch"] = BY_NAME["fp8_moe_shards"].detail
    return result


def load_and_run(checkpoint, x, topk_weights, topk_ids, E, hidden, inter_full, tp, ranks):
    os.environ["SGLANG_EAGLE3_EXT_FP8_MOE"] = "on"  # aligned layers too (the opt-in kernel patch)
    _sglang_on_cpu()
    import torch
    from sglang.srt.layers.moe.fused_moe_triton.layer import FusedMoE
    from sglang.srt.layers.moe.token_dispatcher.standard import StandardDispatchOutput
    from sglang.srt.layers.moe.topk import StandardTopKOutput

    def build(rank):
        config = _at_rank(tp, rank)
        return FusedMoE(num_experts=E, hidden_size=hidden, intermediate_size=inter_full, layer_id=1,
                        top_k=topk_ids.shape[1], params_dtype=torch.float32, quant_config=config,
                        prefix="model.layers.1.mlp.experts")

    result = _unpatched_then_patch(build, ranks[0])
    mapping = FusedMoE.make_expert_params_mapping("gate_proj", "down_proj", "up_proj", E)
    for rank in ranks:
        layer = build(rank)
        params = dict(layer.named_parameters(prefix="model.layers.1.mlp.experts"))
        for name, tensor in checkpoint.items():  # as Glm4MoeForCausalLM.load_weights does
            for param_name, weight_name, expert_id, shard_id in mapping:
                if weight_name in name:
                    target = name.replace(weight_name, param_name)
                    params[target].weight_loader(params[target], tensor, target, shard_id=shard_id,
                                                 expert_id=expert_id)
                    break
        layer.quant_method.process_weights_after_loading(layer)
        topk = StandardTopKOutput(topk_weights, topk_ids, torch.zeros(x.shape[0], E))
        out = layer.quant_method.apply(layer, StandardDispatchOutput(x, None, topk)).hidden_states
        result[rank] = dict(out=out, blocks=getattr(layer, "eagle3_fp8_blocks", None),
                            **{k: getattr(layer, k).data.clone() for k in
                               ("w13_weight", "w2_weight", "w13_weight_scale_inv", "w2_weight_scale_inv")})
    return result


def load_shared_expert(checkpoint, x, hidden, inter, tp, ranks):
    """GLM-4.7's shared expert as SGLang builds it when not fused into the MoE (Glm4MoeMLP:
    MergedColumnParallelLinear gate_up + RowParallelLinear down, Fp8LinearMethod), per rank;
    checkpoint names `...shared_experts.{gate,up,down}_proj.weight[_scale_inv]`."""
    _sglang_on_cpu()
    from sglang.srt.models.glm4_moe import Glm4MoeMLP

    def build(rank):
        config = _at_rank(tp, rank)
        return Glm4MoeMLP(hidden_size=hidden, intermediate_size=inter, hidden_act="silu", quant_config=config,
                          reduce_results=False, prefix="model.layers.1.mlp.shared_experts")

    result = _unpatched_then_patch(build, ranks[0])
    stacked = [("gate_up_proj", "gate_proj", 0), ("gate_up_proj", "up_proj", 1)]  # as Glm4Moe's loader
    for rank in ranks:
        mlp = build(rank)
        params = dict(mlp.named_parameters(prefix="model.layers.1.mlp.shared_experts"))
        for name, tensor in checkpoint.items():
            for param_name, weight_name, shard_id in stacked:
                if weight_name in name:
                    target = name.replace(weight_name, param_name)
                    params[target].weight_loader(params[target], tensor, shard_id)
                    break
            else:
                params[name].weight_loader(params[name], tensor)
        for module in (mlp.gate_up_proj, mlp.down_proj):
            module.quant_method.process_weights_after_loading(module)
        result[rank] = dict(out=mlp(x), blocks=(mlp.gate_up_proj.eagle3_fp8_block, mlp.down_proj.eagle3_fp8_block),
                            **{f"{m}.{k}": getattr(getattr(mlp, m), k).data.clone()
                               for m in ("gate_up_proj", "down_proj") for k in ("weight", "weight_scale_inv")})
    return result
