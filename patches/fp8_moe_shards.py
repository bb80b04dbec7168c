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
Two patches, because they answer different questions:
  * fp8_moe_shards (on): layers SGLang refuses (unaligned shards) load and run on our kernel, the
    only one that can run them. Aligned layers are left exactly as SGLang makes them.
  * fp8_moe_kernel (off until benchmarks/results/ shows our kernel wins on a GPU):
    SGLANG_EAGLE3_EXT_FP8_MOE=on sends aligned block-FP8 MoE calls of at most
    SGLANG_EAGLE3_EXT_FP8_MOE_MAX_TOKENS tokens (default 256: decode and verify) to our kernel.
Our kernel's support guard fails closed: a MoE config attribute it cannot read means "unsupported".

Dense / shared-expert linears (Fp8LinearMethod) at such shards get the same treatment: per-layer
blocks (g_n, g_k), checkpoint scales repeated to that grid before SGLang's loaders slice them, and
apply on kernels/fp8_moe.fp8_block_linear. (GLM-4.x on a CUDA GPU usually fuses its shared expert
into the FusedMoE anyway: SGLang's shared-experts fusion, on without expert parallelism.)
"""

from __future__ import annotations

import copy
import inspect
import logging
from math import gcd

from sglang_eagle3_ext.settings import BY_NAME, settings

from .base import NotApplicable, Patch, Target

logger = logging.getLogger("sglang_eagle3_ext")

ENV = BY_NAME["fp8_moe"].env
TOKENS_ENV = BY_NAME["fp8_moe_max_tokens"].env
FP8 = "sglang.srt.layers.quantization.fp8"
FUSED_MOE = "sglang.srt.layers.moe.fused_moe_triton.layer:FusedMoE"
STANDARD = "sglang.srt.layers.moe.token_dispatcher.standard"
SCALE_PARAM = "sglang.srt.layers.parameter:BlockQuantScaleParameter"
SCALE_LOADERS = ("load_merged_column_weight", "load_row_parallel_weight", "load_column_parallel_weight")
CREATE_PARAMS = ("layer", "hidden_size", "intermediate_size_per_partition")
LINEAR_CREATE_PARAMS = ("layer", "input_size_per_partition", "output_partition_sizes", "input_size")


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


def _create_name(p) -> str:
    """SGLang builds the MoE weights in a static create_fp8_moe_weight_ (newer) or create_weights."""
    method = p.get(f"{FP8}:Fp8MoEMethod")
    static = isinstance(inspect.getattr_static(method, "create_fp8_moe_weight_", None), staticmethod)
    return "create_fp8_moe_weight_" if static else "create_weights"


def _make_create(original):
    sig = inspect.signature(original)

    def create(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        a = bound.arguments
        owner = a.get("self")
        config = a["quant_config"] if "quant_config" in a else owner.quant_config
        block_quant = a["block_quant"] if "block_quant" in a else getattr(owner, "block_quant", False)
        block = getattr(config, "weight_block_size", None)
        inter = a["intermediate_size_per_partition"]
        blocks = regrid_blocks(block, inter) if block_quant and block else None
        if blocks is None or getattr(config, "use_mxfp8", False):
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

    return create


# ------------------------------------------------------------------ load


def _make_loader(original):
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


# ------------------------------------------------------------------ forward


def _fp8_capable(x) -> bool:
    """e4m3 tensor-core dots: sm89+ on NVIDIA (Triton has no e4m3fn on sm80); CPU: the interpreter."""
    import torch

    if not x.is_cuda:
        return True
    return torch.version.hip is None and torch.cuda.get_device_capability(x.device) >= (8, 9)


def _aligned_for_ours(method, layer, x) -> bool:
    """fp8_moe_kernel: an aligned block-FP8 call of decode / verify size that our kernel can run."""
    import torch

    if not getattr(method, "block_quant", False) or getattr(method, "use_mxfp8", False):
        return False
    if layer.w13_weight.dtype != torch.float8_e4m3fn or not _fp8_capable(x):
        return False
    return x.shape[0] <= settings().fp8_moe_max_tokens


_UNREADABLE = object()


def _unsupported(method, layer) -> str | None:
    """What our kernel would need that this layer lacks, or None. Fails closed: a runner-config field
    that is not there (renamed upstream) counts as unsupported. A missing bias / input-scale
    attribute is SGLang's way of saying the layer has none."""
    cfg = getattr(method, "moe_runner_config", None)
    fields = ("activation", "is_gated", "apply_router_weight_on_input", "no_combine", "gemm1_alpha",
              "gemm1_clamp_limit", "swiglu_limit", "routed_scaling_factor")
    got = {k: getattr(cfg, k, _UNREADABLE) for k in fields}
    unreadable = [k for k, v in got.items() if v is _UNREADABLE]
    if unreadable or getattr(layer, "moe_ep_size", _UNREADABLE) is _UNREADABLE:
        return f"a MoE runner config it can read (missing: {', '.join(unreadable or ['moe_ep_size'])})"
    checks = [
        (got["activation"] != "silu" or not got["is_gated"], "a gated SiLU MLP"),
        (got["apply_router_weight_on_input"], "router weights applied to the output"),
        (got["no_combine"], "combined top-k outputs"),
        (getattr(layer, "w13_weight_bias", None) is not None, "no expert biases"),
        (getattr(layer, "w13_input_scale", None) is not None, "dynamic activation scales"),
        (layer.moe_ep_size > 1, "no expert parallelism"),
        (any(got[k] is not None for k in ("gemm1_alpha", "gemm1_clamp_limit", "swiglu_limit")),
         "no SwiGLU clamps"),
        (not _fp8_capable(layer.w13_weight), "an sm89+ NVIDIA GPU (or CPU with TRITON_INTERPRET=1)"),
        (str(layer.w13_weight.dtype) != "torch.float8_e4m3fn", "float8_e4m3fn weights"),
    ]
    runner = getattr(getattr(method, "runner", None), "runner_backend", None)
    if runner is not None and not runner.is_triton():
        checks.append((True, f"the triton MoE runner backend (have {runner})"))
    missing = [need for bad, need in checks if bad]
    return ", ".join(missing) if missing else None


def _make_forward(standard, aligned: bool):
    """Fp8MoEMethod.apply on our kernel: re-gridded layers (fp8_moe_shards), or aligned ones of
    decode / verify size (fp8_moe_kernel, aligned=True)."""
    from sglang_eagle3_ext.kernels.fp8_moe import fused_experts_fp8

    def make(original):
        def apply(self, layer, dispatch_output, *args, **kwargs):
            x = dispatch_output.hidden_states
            regridded = getattr(layer, "eagle3_fp8_blocks", None) is not None
            if regridded == aligned or (aligned and not _aligned_for_ours(self, layer, x)):
                return original(self, layer, dispatch_output, *args, **kwargs)
            why = _unsupported(self, layer)
            if why:
                if regridded:
                    raise RuntimeError(f"FP8 MoE shard {layer.w2_weight.shape[2]} (not a multiple of the "
                                       f"block) runs only on sglang-eagle3-ext's kernel, which needs: {why}")
                return original(self, layer, dispatch_output, *args, **kwargs)
            topk_weights, topk_ids = dispatch_output.topk_output[:2]
            block = self.quant_config.weight_block_size
            blocks = layer.eagle3_fp8_blocks if regridded else (block, block)
            out = fused_experts_fp8(
                x, layer.w13_weight, layer.w2_weight, topk_weights, topk_ids,
                layer.w13_weight_scale_inv, layer.w2_weight_scale_inv,
                w1_block_shape=blocks[0], w2_block_shape=blocks[1],
                routed_scaling_factor=self.moe_runner_config.routed_scaling_factor, out_dtype=x.dtype)
            return standard.StandardCombineInput(hidden_states=out)

        return apply

    return make


# ------------------------------------------------------------------ dense / shared-expert linears


def _plan_linear(p) -> None:
    """Fp8LinearMethod at a TP shard that splits 128-blocks (GLM-4.7's shared expert 1536 / TP8 when
    SGLang does not fuse it into the MoE): this layer's method gets a copy of the quant config with
    blocks (g_n, g_k) that divide its partitions, so SGLang's own check, scale shapes and
    merged-column scale offsets (which read that config) are in g units; checkpoint scales are
    repeated to the g-grid before SGLang's loaders slice them; apply runs kernels/fp8_moe's
    fp8_block_linear (SGLang's dense FP8 backends assume 128-blocks)."""
    from sglang_eagle3_ext.kernels.fp8_moe import fp8_block_linear

    p.params(f"{FP8}:Fp8LinearMethod.create_weights", LINEAR_CREATE_PARAMS)
    sig = inspect.signature(p.get(f"{FP8}:Fp8LinearMethod.create_weights"))

    def make_create(original):
        def create_weights(self, *args, **kwargs):
            a = sig.bind(self, *args, **kwargs).arguments
            block = getattr(self.quant_config, "weight_block_size", None)
            if not getattr(self, "block_quant", False) or not block or getattr(self, "use_mxfp8", False):
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

    p.wrap(f"{FP8}:Fp8LinearMethod.create_weights", make_create)
    p.wrap(f"{FP8}:Fp8LinearMethod.process_weights_after_loading", make_after_loading)
    p.wrap(f"{FP8}:Fp8LinearMethod.apply", make_apply)
    for name in SCALE_LOADERS:  # on this class itself (revert removes it), not on the shared base
        p.wrap(f"{SCALE_PARAM}.{name}", make_load)


def plan_shards(p) -> str:
    create = _create_name(p)
    p.params(f"{FP8}:Fp8MoEMethod.{create}", CREATE_PARAMS)
    p.params(f"{FUSED_MOE}.weight_loader", ("param", "loaded_weight", "weight_name"), ordered=True)
    p.params(f"{FUSED_MOE}.weight_loader", ("shard_id",))
    standard = p.load(STANDARD)
    p.get(f"{STANDARD}:StandardCombineInput")
    p.wrap(f"{FP8}:Fp8MoEMethod.{create}", _make_create)
    p.wrap(f"{FUSED_MOE}.weight_loader", _make_loader)
    p.wrap(f"{FP8}:Fp8MoEMethod.apply", _make_forward(standard, aligned=False))
    try:
        _plan_linear(p)
        linear = "dense/shared linears too (Fp8LinearMethod)"
    except NotApplicable as e:  # all or nothing: the MoE part stands on its own
        p.changes[:] = [c for c in p.changes if not c.path.startswith((f"{FP8}:Fp8LinearMethod", SCALE_PARAM))]
        linear = f"dense linears: not patched ({e})"
    return (f"block-FP8 MoE at TP shards that split a block (Fp8MoEMethod.{create}, FusedMoE.weight_loader, "
            f"Fp8MoEMethod.apply for those layers only), {linear}")


def kernel_wanted():
    return (None if settings().fp8_moe else
            f"off: aligned FP8 MoE layers keep SGLang's kernel ({ENV}=on swaps in ours for calls of "
            f"<= {TOKENS_ENV} tokens; no GPU measurement shows it wins yet)")


def plan_kernel(p) -> str:
    p.get(f"{STANDARD}:StandardCombineInput")
    p.wrap(f"{FP8}:Fp8MoEMethod.apply", _make_forward(p.load(STANDARD), aligned=True))
    return (f"aligned block-FP8 MoE calls of <= {settings().fp8_moe_max_tokens} tokens -> our Triton "
            f"kernel (sm89+ CUDA, or CPU under TRITON_INTERPRET=1)")


PATCHES = [
    Patch("fp8_moe_shards", "block-FP8 MoE / linears at TP shards SGLang refuses (exact re-grid, our kernel)",
          plan_shards, targets=[
              Target(f"{FP8}:Fp8MoEMethod.create_fp8_moe_weight_", params=CREATE_PARAMS, optional=True),
              Target(f"{FP8}:Fp8MoEMethod.create_weights", params=CREATE_PARAMS, optional=True),
              Target(f"{FUSED_MOE}.weight_loader", params=("param", "loaded_weight", "weight_name"),
                     ordered=True),
              Target(f"{FP8}:Fp8MoEMethod.apply", params=("layer", "dispatch_output"), ordered=True),
              Target(f"{STANDARD}:StandardCombineInput", "read"),
              Target(f"{FP8}:Fp8LinearMethod.create_weights", params=LINEAR_CREATE_PARAMS, optional=True),
              Target(f"{FP8}:Fp8LinearMethod.process_weights_after_loading", params=("layer",),
                     optional=True),
              Target(f"{FP8}:Fp8LinearMethod.apply", params=("layer", "x", "bias"), ordered=True,
                     optional=True),
              *[Target(f"{SCALE_PARAM}.{n}", params=("loaded_weight",), ordered=True, optional=True)
                for n in SCALE_LOADERS]]),
    Patch("fp8_moe_kernel", "aligned block-FP8 MoE decode/verify calls on our Triton kernel (opt-in)",
          plan_kernel, wanted=kernel_wanted,
          targets=[Target(f"{FP8}:Fp8MoEMethod.apply", params=("layer", "dispatch_output"), ordered=True),
                   Target(f"{STANDARD}:StandardCombineInput", "read")]),
]
