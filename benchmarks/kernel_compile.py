"""Compile every Triton kernel of kernels/ ahead of time for an H100 / H200 (sm_90a), on a CPU.

    python benchmarks/kernel_compile.py [--triton-path DIR] [--jobs 2] [--out rows.json] [--only tree_ops]

Triton's compiler and its bundled ptxas need no GPU. The launchers of compile_targets.REGISTRY run
on CPU tensors with a stand-in driver that reports an sm_90 target; Triton's JIT then specializes
each launch as it would on the GPU (signature, constexprs, 1-valued and 16-divisible arguments,
num_warps / num_stages) and calls its cache hook before compiling: there the launch is recorded
and skipped (nothing runs). Each distinct launch is then compiled to a cubin, in --jobs processes,
with the ptxas log parsed for registers, spills and stack; shared memory is Triton's allocation.

--triton-path puts another Triton first on sys.path (e.g. .triton-3.6.0, the GPU machine's),
before anything imports triton. Prints (or writes) JSON: {"triton": version, "target", "rows"}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import re
import resource
import sys
import tempfile
import time

TARGET = ("cuda", 90, 32)  # backend, compute capability, warp size: Triton compiles 90 as sm_90a
H100_SMEM = 227 * 1024  # max dynamic shared memory per block on sm_90


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triton-path", help="directory holding another Triton package (pip --target)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out")
    ap.add_argument("--only", nargs="*", help="registry entries (default: all)")
    return ap.parse_args(argv)


class StandInDriver:
    """What JITFunction.run asks the active driver for, answering for an sm_90 GPU."""

    def __init__(self, target):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def is_active(self):
        return True


def capture(registry, only=None):
    """Run every launcher of `registry`; returns the distinct launches, each
    {"kernel", "fn", "compile": Triton's compile request, "uses": [labels]}."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.runtime.driver import driver

    launches = {}
    current = {}

    def hook(*, key, repr, fn, compile, is_manual_warmup, already_compiled):  # noqa: A002
        jit = fn.jit_function
        unit = launches.setdefault((fn.module, fn.name, str(key)), {
            "family": current["family"], "kernel": fn.name, "fn": jit, "compile": compile, "uses": []})
        if current["label"] not in unit["uses"]:
            unit["uses"].append(current["label"])
        return True  # handled: Triton neither compiles nor launches

    driver.set_active(StandInDriver(GPUTarget(*TARGET)))
    triton.knobs.runtime.jit_cache_hook = hook
    try:
        for family, cases in registry.items():
            if only and family not in only:
                continue
            current["family"] = family
            for label, launch in cases():
                current["label"] = label
                launch()
    finally:  # the stand-in driver stays: without a GPU there is no real one to go back to
        triton.knobs.runtime.jit_cache_hook = None
    return list(launches.values())


PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
}


def parse_ptxas(log: str) -> dict:
    """Figures of the (single) entry function in a `ptxas -v` log; None where absent."""
    out = {}
    for key, rx in PTXAS.items():
        m = rx.search(log)
        out[key] = int(m.group(1)) if m else None
    return out


def describe(unit) -> dict:
    """The launch as a readable config: constexprs and specialized values by argument name,
    pointer / scalar types, launch options."""
    jit, req = unit["fn"], unit["compile"]
    names = jit.arg_names
    declared = {names[i] for i in jit.constexprs}
    consts, special = {}, {}
    for path, value in req["constants"].items():
        name = names[path[0]] if isinstance(path, tuple) else path
        (consts if name in declared else special)[name] = value if isinstance(value, (int, float, bool, str)) or value is None else str(value)
    sig = {k: v for k, v in req["signature"].items() if v != "constexpr"}
    aligned = []
    for path, attrs in (req["configs"][0] if req["configs"] else {}).items():
        if any(a and a[0] == "tt.divisibility" for a in attrs):
            aligned.append(names[path[0]])
    return {"constexprs": consts, "specialized": special, "signature": sig, "divisible_by_16": sorted(aligned),
            "num_warps": req["num_warps"], "num_stages": req["num_stages"], "num_ctas": req["num_ctas"]}


def compile_unit(unit) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    req = unit["compile"]
    row = {"family": unit["family"], "kernel": unit["kernel"], **describe(unit), "uses": unit["uses"]}
    options = {k: req[k] for k in ("num_warps", "num_stages", "num_ctas", "enable_fp_fusion") if k in req}
    if req.get("extern_libs"):
        options["extern_libs"] = req["extern_libs"]
    src = ASTSource(unit["fn"], req["signature"], req["constants"], req["configs"][0] if req["configs"] else None)
    start, cpu0 = time.time(), _cpu()
    log = io.StringIO()
    triton.knobs.nvidia.dump_ptxas_log = True  # make_cubin prints ptxas -v's log
    try:
        with contextlib.redirect_stdout(log):
            k = triton.compile(src, target=GPUTarget(*TARGET), options=options)
        row.update(ok=True, shared_bytes=k.metadata.shared, cubin_bytes=len(k.asm["cubin"]),
                   **parse_ptxas(log.getvalue()))
        if row["registers"] is None:
            row["note"] = "no ptxas log (cubin came from the Triton cache: set a fresh TRITON_CACHE_DIR)"
    except Exception as e:  # a compile error is a result here: reported, and the caller fails
        row.update(ok=False, error=f"{type(e).__name__}: {e}"[-3000:])
    row["seconds"] = round(time.time() - start, 2)
    row["cpu_seconds"] = round(_cpu() - cpu0, 2)  # this process + its ptxas
    return row


def _cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_UNITS = []


def _compile_index(i):
    return compile_unit(_UNITS[i])


def run(only=None, jobs=1):
    """Capture and compile; returns the JSON document (rows sorted by kernel, then config)."""
    import triton
    import compile_targets

    t0 = time.time()
    units = capture(compile_targets.REGISTRY, only)
    t_capture = time.time() - t0
    _UNITS[:] = units
    if jobs > 1 and len(units) > 1:
        # fork: the workers inherit the captured launches (JIT functions, Triton's requests)
        with multiprocessing.get_context("fork").Pool(min(jobs, len(units))) as pool:
            rows = pool.map(_compile_index, range(len(units)), chunksize=1)
    else:
        rows = [compile_unit(u) for u in units]
    rows.sort(key=lambda r: (r["family"], r["kernel"], json.dumps(r["constexprs"], sort_keys=True),
                             json.dumps(r["signature"], sort_keys=True), json.dumps(r["specialized"], sort_keys=True)))
    return {"triton": triton.__version__, "triton_path": os.path.dirname(os.path.dirname(triton.__file__)),
            "target": "sm_90a", "jobs": jobs, "capture_seconds": round(t_capture, 1),
            "wall_seconds": round(time.time() - t0, 1),
            "compile_cpu_seconds": round(sum(r["cpu_seconds"] for r in rows), 1), "rows": rows}


def main(argv=None):
    args = _args(argv)
    if args.triton_path:
        sys.path.insert(0, os.path.abspath(args.triton_path))
    os.environ["TRITON_INTERPRET"] = "0"  # before any kernel module is imported
    # a fresh cache: a cached cubin comes without the ptxas log the figures are read from
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="kernel-compile-")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    doc = run(args.only, args.jobs)
    text = json.dumps(doc, indent=1, default=str)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0 if all(r["ok"] for r in doc["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
