"""FP8 block-quantized MoE at any TP size, and the FP8 MoE forward on our Triton kernel.

SGLang refuses to build a 128x128 block-FP8 FusedMoE whose per-rank intermediate size is not a
multiple of the block (GLM-4.7: 1536 / TP8 = 192): Fp8MoEMethod.create_fp8_moe_weight_ raises
ValueError, and its scale loader could not slice 1.5 scale blocks per rank anyway. Three changes,
all exact (kernels/fp8_regrid.py):
  * create: such a layer gets scales on a grid of g = gcd(block, shard): w13 [E, 2I/g1, H/bk],
    w2 [E, H/bn, I/g2] (SGLang's own shape check runs against blocks that divide the shard);
  * load: each checkpoint scale is repeated block/g times along the sharded dim before SGLang's
    loader slices this rank's part, so each g-slice carries the scale of its checkpoint block;
  * forward: Fp8MoEMethod.apply runs kernels/fp8_moe.py with blocks (g1, bk) / (bn, g2).
The forward also takes aligned block-FP8 layers where enabled:

    SGLANG_EAGLE3_EXT_FP8_MOE = auto (default: our kernel on CUDA sm89+ for calls of at most
                                     SGLANG_EAGLE3_EXT_FP8_MOE_MAX_TOKENS tokens, default 256 --
                                     decode and verify; SGLang's kernel for larger ones and elsewhere)
                              | on   (our kernel everywhere, e.g. CPU with TRITON_INTERPRET=1)
                              | off  (SGLang untouched: unaligned shards raise SGLang's ValueError)
Unaligned (re-gridded) shards always run our kernel: SGLang's cannot.

Dense / shared-expert linears (Fp8LinearMethod) at such shards get the same treatment: per-layer
blocks (g_n, g_k), checkpoint scales repeated to that grid before SGLang's loaders slice them, and
apply on kernels/fp8_moe.fp8_block_linear. (GLM-4.x on a CUDA GPU usually fuses its shared expert
into the FusedMoE anyway: SGLang's shared-experts fusion, on without expert parallelism.)
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
from math import gcd

from .base import NotApplicable, import_or_skip, wrap_method

logger = logging.getLogger("sglang_eagle3_ext")

ENV = "SGLANG_EAGLE3_EXT_FP8_MOE"
CHOICES = ("auto", "on", "off")
TOKENS_ENV = "SGLANG_EAGLE3_EXT_FP8_MOE_MAX_TOKENS"


def max_tokens() -> int:
    value = os.environ.get(TOKENS_ENV, "256")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{TOKENS_ENV}={value!r} must be an integer (tokens per MoE call)") from None


def mode() -> str:
    value = os.environ.get(ENV, "auto").strip().lower()
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r} is not one of {', '.join(CHOICES)}")
    return value


# ------------------------------------------------------------------ create


def regrid_blocks(block_shape, inter: int):
    """((g1, bk), (bn, g2)) for a shard of `inter`, or None when SGLang's blocks fit it."""
    bn, bk = block_shape
    if inter % bn == 0 and inter % bk == 0:
        return None
    return (gcd(bn, inter), bk), (bn, gcd(bk, inter))


def _give_regridded_scales(layer, hidden: int, inter: int, block_shape, blocks) -> None:
    import torch

    (g1, bk), (bn, g2) = blocks
    w13, w2 = layer.w13_weight_scale_inv, layer.w2_weight_scale_inv
    num_experts, shards = layer.w13_weight.shape[0], layer.w13_weight.shape[1] // inter
    w13.data = torch.ones(num_experts, shards * inter // g1, -(-hidden // bk), dtype=w13.dtype, device=w13.device)
    w2.data = torch.ones(num_experts, -(-hidden // bn), inter // g2, dtype=w2.dtype, device=w2.device)
    # checkpoint scale -> (dim of the per-expert scale that TP slices, repeats per block)
    w13.eagle3_regrid = {"w1": (0, block_shape[0] // g1), "w3": (0, block_shape[0] // g1)}
    w2.eagle3_regrid = {"w2": (1, block_shape[1] // g2)}
    layer.eagle3_fp8_blocks = blocks
    logger.info("sglang-eagle3-ext: FP8 MoE shard %d is not a multiple of block %s: scales re-gridded "
                "to gate/up %s, down %s (exact)", inter, list(block_shape), blocks[0], blocks[1])


def _patch_create(fp8) -> str:
    method = fp8.Fp8MoEMethod
    static = isinstance(inspect.getattr_static(method, "create_fp8_moe_weight_", None), staticmethod)
    name = "create_fp8_moe_weight_" if static else "create_weights"
    original = getattr(method, name)
    if getattr(original, "__eagle3_ext_wrapped__", False):
        return name
    sig = inspect.signature(original)
    needed = {"layer", "hidden_size", "intermediate_size_per_partition"}
    if not needed <= set(sig.parameters):
        raise NotApplicable(f"Fp8MoEMethod.{name} has no {sorted(needed - set(sig.parameters))}")

    def create(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        a = bound.arguments
        owner = a.get("self")
        config = a["quant_config"] if "quant_config" in a else owner.quant_config
        block_quant = a["block_quant"] if "block_quant" in a else getattr(owner, "block_quant", False)
        block = getattr(config, "weight_block_size", None)
        inter = a["intermediate_size_per_partition"]
        blocks = regrid_blocks(block, inter) if block_quant and block else None
        if blocks is None or mode() == "off" or getattr(config, "use_mxfp8", False):
            return original(*args, **kwargs)
        # SGLang's checks and scale shapes against blocks that divide the shard; shapes fixed below
        proxy = copy.copy(config)
        proxy.weight_block_size = [blocks[0][0], blocks[1][1]]
        if "quant_config" in a:
            a["quant_config"] = proxy
            result = original(*bound.args, **bound.kwargs)
        else:
            owner.quant_config = proxy
            try:
                result = original(*bound.args, **bound.kwargs)
            finally:
                owner.quant_config = config
        _give_regridded_scales(a["layer"], a["hidden_size"], inter, block, blocks)
        return result

    wrapped = staticmethod(create) if static else create
    create.__eagle3_ext_wrapped__ = True
    setattr(method, name, wrapped)
    return name


# ------------------------------------------------------------------ load


def _patch_loader(layer_mod) -> None:
    fused_moe = layer_mod.FusedMoE
    params = list(inspect.signature(fused_moe.weight_loader).parameters)
    if params[:4] != ["self", "param", "loaded_weight", "weight_name"] or "shard_id" not in params:
        raise NotApplicable(f"FusedMoE.weight_loader{params} is not (self, param, loaded_weight, "
                            "weight_name, shard_id, ...)")

    def make(original):
        def weight_loader(self, param, loaded_weight, weight_name, *args, **kwargs):
            regrid = getattr(param, "eagle3_regrid", None)
            if regrid:
                shard_id = kwargs.get("shard_id", args[0] if args else None)
                if shard_id in regrid:  # a checkpoint block scale: to the shard's g-grid
                    dim, repeat = regrid[shard_id]
                    dim += loaded_weight.dim() - 2  # [rows, cols] per expert, or [E, rows, cols]
                    loaded_weight = loaded_weight.repeat_interleave(repeat, dim=dim)
            return original(self, param, loaded_weight, weight_name, *args, **kwargs)

        return weight_loader

    wrap_method(fused_moe, "weight_loader", make)


# ------------------------------------------------------------------ forward


def _fp8_capable(x) -> bool:
    """e4m3 tensor-core dots: sm89+ on NVIDIA (Triton has no e4m3fn on sm80); CPU: the interpreter."""
    import torch

    if not x.is_cuda:
        return True
    return torch.version.hip is None and torch.cuda.get_device_capability(x.device) >= (8, 9)


def _ours_for(method, layer, x) -> bool:
    if getattr(layer, "eagle3_fp8_blocks", None) is not None:
        return True  # SGLang's kernels cannot run a re-gridded shard
    choice = mode()
    if choice == "off" or not getattr(method, "block_quant", False) or getattr(method, "use_mxfp8", False):
        return False
    import torch

    if layer.w13_weight.dtype != torch.float8_e4m3fn or not _fp8_capable(x):
        return False
    if choice == "on":
        return True
    # auto: decode / verify batches on a GPU, where the kernel is built for bandwidth; larger
    # (prefill) batches keep SGLang's tuned kernel until a benchmark says otherwise
    return x.is_cuda and x.shape[0] <= max_tokens()


def _unsupported(method, layer) -> str | None:
    cfg = method.moe_runner_config
    checks = [
        (getattr(cfg, "activation", "silu") != "silu" or not getattr(cfg, "is_gated", True), "a gated SiLU MLP"),
        (getattr(cfg, "apply_router_weight_on_input", False), "router weights applied to the output"),
        (getattr(cfg, "no_combine", False), "combined top-k outputs"),
        (getattr(layer, "w13_weight_bias", None) is not None, "no expert biases"),
        (getattr(layer, "w13_input_scale", None) is not None, "dynamic activation scales"),
        (getattr(layer, "moe_ep_size", 1) > 1, "no expert parallelism"),
        (any(getattr(cfg, k, None) is not None for k in ("gemm1_alpha", "gemm1_clamp_limit", "swiglu_limit")),
         "no SwiGLU clamps"),
    ]
    checks.append((not _fp8_capable(layer.w13_weight), "an sm89+ NVIDIA GPU (or CPU with TRITON_INTERPRET=1)"))
    checks.append((str(layer.w13_weight.dtype) != "torch.float8_e4m3fn", "float8_e4m3fn weights"))
    runner = getattr(getattr(method, "runner", None), "runner_backend", None)
    if runner is not None and not runner.is_triton():
        checks.append((True, f"the triton MoE runner backend (have {runner})"))
    missing = [need for bad, need in checks if bad]
    return ", ".join(missing) if missing else None


def _patch_forward(fp8, standard) -> None:
    from sglang_eagle3_ext.kernels.fp8_moe import fused_experts_fp8

    def make(original):
        def apply(self, layer, dispatch_output, *args, **kwargs):
            x = dispatch_output.hidden_states
            if not _ours_for(self, layer, x):
                return original(self, layer, dispatch_output, *args, **kwargs)
            why = _unsupported(self, layer)
            if why:
                if getattr(layer, "eagle3_fp8_blocks", None) is not None:
                    raise RuntimeError(f"FP8 MoE shard {layer.w2_weight.shape[2]} (not a multiple of the "
                                       f"block) runs only on sglang-eagle3-ext's kernel, which needs: {why}")
                return original(self, layer, dispatch_output, *args, **kwargs)
            topk_weights, topk_ids = dispatch_output.topk_output[:2]
            block = self.quant_config.weight_block_size
            blocks = getattr(layer, "eagle3_fp8_blocks", None) or (block, block)
            out = fused_experts_fp8(
                x, layer.w13_weight, layer.w2_weight, topk_weights, topk_ids,
                layer.w13_weight_scale_inv, layer.w2_weight_scale_inv,
                w1_block_shape=blocks[0], w2_block_shape=blocks[1],
                routed_scaling_factor=self.moe_runner_config.routed_scaling_factor, out_dtype=x.dtype)
            return standard.StandardCombineInput(hidden_states=out)

        return apply

    wrap_method(fp8.Fp8MoEMethod, "apply", make)


# ------------------------------------------------------------------ dense / shared-expert linears


def _patch_linear(fp8, parameter) -> None:
    """Fp8LinearMethod at a TP shard that splits 128-blocks (GLM-4.7's shared expert 1536 / TP8 when
    SGLang does not fuse it into the MoE): this layer's method gets a copy of the quant config with
    blocks (g_n, g_k) that divide its partitions, so SGLang's own check, scale shapes and
    merged-column scale offsets (which read that config) are in g units; checkpoint scales are
    repeated to the g-grid before SGLang's loaders slice them; apply runs kernels/fp8_moe's
    fp8_block_linear (SGLang's dense FP8 backends assume 128-blocks)."""
    from sglang_eagle3_ext.kernels.fp8_moe import fp8_block_linear

    method = fp8.Fp8LinearMethod
    sig = inspect.signature(method.create_weights)
    needed = {"layer", "input_size_per_partition", "output_partition_sizes", "input_size"}
    if not needed <= set(sig.parameters):
        raise NotApplicable(f"Fp8LinearMethod.create_weights has no {sorted(needed - set(sig.parameters))}")

    def make_create(original):
        def create_weights(self, *args, **kwargs):
            a = sig.bind(self, *args, **kwargs).arguments
            block = getattr(self.quant_config, "weight_block_size", None)
            if not getattr(self, "block_quant", False) or not block or getattr(self, "use_mxfp8", False) \
                    or mode() == "off":
                return original(self, *args, **kwargs)
            bn, bk = block
            parts, k_part = a["output_partition_sizes"], a["input_size_per_partition"]
            g_n = gcd(bn, *parts) if any(p % bn for p in parts) else bn
            g_k = gcd(bk, k_part) if k_part % bk and k_part != a["input_size"] else bk
            if (g_n, g_k) == (bn, bk) or hasattr(a["layer"], "total_num_kv_heads"):
                return original(self, *args, **kwargs)  # aligned; or QKV (not handled: SGLang's error)
            self.quant_config = copy.copy(self.quant_config)  # this layer's own
            self.quant_config.weight_block_size = [g_n, g_k]
            self.weight_block_size = [g_n, g_k]
            result = original(self, *args, **kwargs)
            layer = a["layer"]
            layer.weight_scale_inv.eagle3_regrid = (bn // g_n, bk // g_k)
            layer.eagle3_fp8_block = (g_n, g_k)
            logger.info("sglang-eagle3-ext: FP8 linear partition %s x %d splits %s blocks: scales "
                        "re-gridded to %s (exact)", parts, k_part, block, [g_n, g_k])
            return result

        return create_weights

    def make_load(original):
        def load(self, loaded_weight, *args, **kwargs):
            repeat = getattr(self, "eagle3_regrid", None)
            if repeat:  # checkpoint block scales -> the layer's g-grid, before SGLang slices them
                loaded_weight = loaded_weight.repeat_interleave(repeat[0], 0).repeat_interleave(repeat[1], 1)
            return original(self, loaded_weight, *args, **kwargs)

        return load

    def make_after_loading(original):
        def process_weights_after_loading(self, layer, *args, **kwargs):
            if getattr(layer, "eagle3_fp8_block", None) is not None:
                return None  # fp8 weights + fp32 scales as loaded: what fp8_block_linear reads
            return original(self, layer, *args, **kwargs)

        return process_weights_after_loading

    def make_apply(original):
        def apply(self, layer, x, bias=None, *args, **kwargs):
            block = getattr(layer, "eagle3_fp8_block", None)
            if block is None:
                return original(self, layer, x, bias, *args, **kwargs)
            return fp8_block_linear(x, layer.weight, layer.weight_scale_inv, block, bias, out_dtype=x.dtype)

        return apply

    wrap_method(method, "create_weights", make_create)
    wrap_method(method, "process_weights_after_loading", make_after_loading)
    wrap_method(method, "apply", make_apply)
    scale_param = parameter.BlockQuantScaleParameter
    for name in ("load_merged_column_weight", "load_row_parallel_weight", "load_column_parallel_weight"):
        if name not in vars(scale_param):  # our wrapper on this class, not on the shared base
            setattr(scale_param, name, getattr(scale_param, name))
        wrap_method(scale_param, name, make_load)


def apply() -> str:
    choice = mode()
    if choice == "off":
        raise NotApplicable(f"{ENV}=off")
    fp8 = import_or_skip("sglang.srt.layers.quantization.fp8")
    layer_mod = import_or_skip("sglang.srt.layers.moe.fused_moe_triton.layer")
    standard = import_or_skip("sglang.srt.layers.moe.token_dispatcher.standard")
    if not hasattr(fp8, "Fp8MoEMethod") or not hasattr(layer_mod, "FusedMoE"):
        raise NotApplicable("no Fp8MoEMethod / FusedMoE in this SGLang")
    if not hasattr(standard, "StandardCombineInput"):
        raise NotApplicable("no StandardCombineInput: this SGLang's MoE apply returns another type")
    created = _patch_create(fp8)
    _patch_loader(layer_mod)
    _patch_forward(fp8, standard)
    linear = "dense linears: not patched"
    parameter = import_or_skip("sglang.srt.layers.parameter")
    if hasattr(fp8, "Fp8LinearMethod") and hasattr(parameter, "BlockQuantScaleParameter"):
        try:
            _patch_linear(fp8, parameter)
            linear = "dense/shared linears too (Fp8LinearMethod)"
        except NotApplicable as e:
            linear = f"dense linears: not patched ({e})"
    where = "on every device" if choice == "on" else f"on CUDA sm89+ up to {max_tokens()} tokens"
    return (f"block-FP8 MoE at any TP shard (Fp8MoEMethod.{created}, FusedMoE.weight_loader), {linear}; "
            f"Fp8MoEMethod.apply -> our Triton kernel {where}")
