"""`python -m sglang_eagle3_ext doctor`: what is installed, which patches apply, which tree ops run."""

from __future__ import annotations

import importlib.metadata as md

PACKAGES = ["sglang", "torch", "triton", "transformers", "sglang-kernel", "sgl-kernel",
            "flashinfer-python", "prometheus-client", "sglang-eagle3-ext"]


def versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def entry_point_registered() -> bool:
    return any(ep.value.startswith("sglang_eagle3_ext.")
               for ep in md.entry_points(group="sglang.srt.plugins"))


def report() -> dict:
    from sglang_eagle3_ext.patches import ALL_PATCHES, apply_all, tree_ops

    apply_all()
    try:
        tree = tree_ops.resolve_choice()
    except Exception as e:
        tree = f"unavailable ({type(e).__name__}: {e})"
    return {"versions": versions(),
            "entry_point": entry_point_registered(),
            "patches": [{"name": p.name, "status": p.status, "summary": p.summary, "detail": p.detail}
                        for p in ALL_PATCHES],
            "tree_ops": tree}


def main(argv=None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="sglang_eagle3_ext doctor", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    from .cpu_defaults import ensure_cpu_env

    ensure_cpu_env()
    rep = report()
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print("versions:")
        for name, v in rep["versions"].items():
            print(f"  {name:<20}{v or 'not installed'}")
        print(f"plugin entry point (sglang.srt.plugins): {'registered' if rep['entry_point'] else 'MISSING'}")
        print("patches:")
        for p in rep["patches"]:
            print(f"  {p['name']:<16}{p['status']:<9}{p['summary']}" + (f" -- {p['detail']}" if p["detail"] else ""))
        print(f"tree ops: {rep['tree_ops']}")
    return 1 if any(p["status"] == "failed" for p in rep["patches"]) else 0
