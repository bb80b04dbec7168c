"""Compile the FP8 MoE GEMM kernel for NVIDIA targets with Triton's real compiler and bundled ptxas
(no GPU needed). Run with TRITON_INTERPRET=0 (the interpreter has no compiler); prints JSON.

    TRITON_INTERPRET=0 python tests/fp8_moe_compile.py 90 89
"""

import json
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sglang_eagle3_ext.kernels.fp8_moe import _fp8_moe_gemm_kernel as kernel

POINTERS = {"b_ptr": "*fp8e4nv", "b_scale_ptr": "*fp32", "c_ptr": "*fp32", "topk_weights_ptr": "*fp32",
            "sorted_ids_ptr": "*i32", "expert_ids_ptr": "*i32", "num_post_ptr": "*i32", "routed_scale": "fp32"}
# (A dtype, constexprs, launch options) as fused_experts_fp8 launches them: GLM-4.7 TP8 gate/up with
# split-K, its down proj at g = 64 and g = 32, per-channel gate/up (large tiles) and down (split-K)
CASES = [
    ("*bf16", dict(A_ROW_DIV=8, C_ROW_DIV=1, GATED=False, PER_CHANNEL=False, GROUP_N=64, MUL_WEIGHT=False,
                   ATOMIC=True, BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, SPLIT_K=4), dict(num_warps=4, num_stages=3)),
    ("*fp32", dict(A_ROW_DIV=1, C_ROW_DIV=8, GATED=True, PER_CHANNEL=False, GROUP_N=128, MUL_WEIGHT=True,
                   ATOMIC=True, BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, SPLIT_K=1), dict(num_warps=4, num_stages=3)),
    ("*fp32", dict(A_ROW_DIV=1, C_ROW_DIV=8, GATED=True, PER_CHANNEL=False, GROUP_N=128, MUL_WEIGHT=True,
                   ATOMIC=True, BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=1), dict(num_warps=4, num_stages=3)),
    ("*bf16", dict(A_ROW_DIV=8, C_ROW_DIV=1, GATED=False, PER_CHANNEL=True, GROUP_N=1, MUL_WEIGHT=False,
                   ATOMIC=False, BLOCK_M=64, BLOCK_N=128, BLOCK_K=128, SPLIT_K=1), dict(num_warps=8, num_stages=4)),
    ("*fp32", dict(A_ROW_DIV=1, C_ROW_DIV=8, GATED=True, PER_CHANNEL=True, GROUP_N=1, MUL_WEIGHT=True,
                   ATOMIC=True, BLOCK_M=32, BLOCK_N=64, BLOCK_K=128, SPLIT_K=2), dict(num_warps=4, num_stages=3)),
]


def compile_all(caps):
    names = kernel.arg_names
    results = []
    for cap in caps:
        for a_dtype, consts, options in CASES:
            types = dict(POINTERS, a_ptr=a_dtype)
            sig = {n: "constexpr" if n in consts else types.get(n, "i32") for n in names}
            start = time.time()
            row = dict(cap=cap, a=a_dtype, **consts)
            try:
                out = triton.compile(ASTSource(kernel, sig, consts), target=GPUTarget("cuda", cap, 32),
                                     options=options)
                row.update(ok=True, shared_bytes=out.metadata.shared, cubin_bytes=len(out.asm["cubin"]))
            except Exception as e:
                row.update(ok=False, error=f"{type(e).__name__}: {e}"[:1500])
            row["seconds"] = round(time.time() - start, 1)
            results.append(row)
    return results


if __name__ == "__main__":
    print(json.dumps(compile_all([int(c) for c in sys.argv[1:]] or [90])))
