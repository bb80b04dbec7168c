"""Every Triton kernel of kernels/ compiles for sm_90a (H100 / H200) at every config its launcher
picks for the decode / verify shapes of the five target models, with the GPU machine's Triton
(3.6.0, .triton-3.6.0 from scripts/install.sh) and with this environment's: Triton's real
compiler and ptxas on the CPU (benchmarks/kernel_compile.py). Catches what the interpreter cannot
(dot operand types, layouts, shared memory, fp8 per architecture) and register spills.

Fails on: a compile error, a spill to local memory, shared memory over sm_90's 227 KiB, a
launched kernel of kernels/ that the registry does not cover, and a committed report
(benchmarks/results/compile_sm90a.json) that no longer lists exactly the configs compiled here
(refresh it with `python benchmarks/compile_report.py`)."""

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compile_report  # noqa: E402

REPORT = ROOT / "benchmarks" / "results" / "compile_sm90a.json"
TRITONS = {"gpu-machine": compile_report.GPU_TRITON, "this-env": None}


@pytest.fixture(scope="module", params=list(TRITONS))
def compiled(request):
    return compile_report.compact(compile_report.compile_with(TRITONS[request.param], jobs=2))


def launched_kernels():
    """(module, kernel) for every `name[grid](...)` launch of a @triton.jit function in kernels/."""
    found = set()
    for path in sorted((ROOT / "kernels").glob("*.py")):
        tree = ast.parse(path.read_text())
        jitted = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
                  and any("jit" in ast.unparse(d) for d in f.decorator_list)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Subscript)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in jitted):
                found.add((path.stem, node.func.value.id))
    return found


def test_compiles_without_spills(compiled):
    assert compiled["rows"], "nothing was compiled"
    bad = compile_report.problems(compiled["rows"])
    assert not bad, "\n".join(bad)


def test_every_launched_kernel_is_compiled(compiled):
    launched = {k for _, k in launched_kernels()}
    assert launched >= {"_build_tree_kernel", "_fp8_moe_gemm_kernel", "_prefix_kernel"}  # the scan works
    missing = launched - {r["kernel"] for r in compiled["rows"]}
    assert not missing, (f"kernels launched in kernels/ but never compiled: {sorted(missing)}; add their "
                         "launcher to benchmarks/compile_targets.REGISTRY")


def test_committed_report_lists_these_configs(compiled):
    assert REPORT.exists(), "run python benchmarks/compile_report.py and commit benchmarks/results/"
    report = json.loads(REPORT.read_text())
    mine = next((t for t in report["tritons"] if t["triton"] == compiled["triton"]), None)
    assert mine is not None, f"the report has no Triton {compiled['triton']}: run benchmarks/compile_report.py"
    want = {compile_report.unit_key(r) for r in compiled["rows"]}
    have = {compile_report.unit_key(r) for r in mine["rows"]}
    assert want == have, (f"{len(want - have)} configs launched now are not in the report, {len(have - want)} "
                          "listed there are no longer launched: run python benchmarks/compile_report.py")
