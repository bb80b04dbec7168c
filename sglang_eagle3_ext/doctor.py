"""`python -m sglang_eagle3_ext doctor`: what is installed, which patches apply, which tree ops run.

`doctor --targets` changes nothing: it resolves every declared target of every patch against the
installed SGLang and probes each patch's plan, and exits 1 when a patch that is wanted on this
platform cannot apply (an SGLang upgrade moved something it needs).
"""

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


def plugin_group_exists() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("sglang.srt.plugins") is not None
    except ImportError:
        return False


def entry_point() -> str:
    ours = any(ep.value.startswith("sglang_eagle3_ext.") for ep in md.entry_points(group="sglang.srt.plugins"))
    if not ours:
        return "MISSING (reinstall the package)"
    if not plugin_group_exists():
        return "registered, but this SGLang has no sglang.srt.plugins group: the bootstrap .pth applies it"
    return "registered"


def report() -> dict:
    from sglang_eagle3_ext.patches import ALL_PATCHES, apply_all, tree_ops
    from sglang_eagle3_ext.settings import settings

    apply_all()
    try:
        tree = tree_ops.resolve_choice()
    except Exception as e:
        tree = f"unavailable ({type(e).__name__}: {e})"
    return {"versions": versions(),
            "entry_point": entry_point(),
            "settings": settings().as_env(),
            "patches": [{"name": p.name, "status": p.status, "summary": p.summary, "detail": p.detail}
                        for p in ALL_PATCHES],
            "tree_ops": tree}


def compat(patches=None) -> dict:
    """Every patch's probe and every declared target's state; applies nothing."""
    if patches is None:
        from sglang_eagle3_ext.patches import ALL_PATCHES as patches

    rows = []
    for p in patches:
        verdict, detail = p.probe()
        targets = [{"target": t.path, "kind": t.kind, "optional": t.optional, "state": state, "detail": why}
                   for t, state, why in p.check_targets()]
        broken = [t for t in targets if t["state"] != "found" and not t["optional"]]
        if verdict == "would apply" and broken:
            verdict, detail = "cannot apply", f"{broken[0]['target']}: {broken[0]['state']}"
        rows.append({"name": p.name, "verdict": verdict, "detail": detail, "targets": targets})
    return {"versions": versions(), "patches": rows,
            "ok": all(r["verdict"] != "cannot apply" for r in rows)}


def _print_compat(rep: dict) -> None:
    print(f"sglang {rep['versions']['sglang']}")
    print(f"{'patch':<52}{'verdict':<14}target / detail")
    for r in rep["patches"]:
        print(f"{r['name']:<52}{r['verdict']:<14}{r['detail']}")
        for t in r["targets"]:
            opt = " (optional)" if t["optional"] else ""
            print(f"{'':<54}{t['state']:<18}{t['kind']:<8}{t['target']}{opt}"
                  + (f" -- {t['detail']}" if t["detail"] and t["state"] != "found" else ""))


def main(argv=None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="sglang_eagle3_ext doctor", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--targets", action="store_true",
                        help="resolve every patch's declared targets without applying anything")
    args = parser.parse_args(argv)
    from .cpu_defaults import ensure_cpu_env

    ensure_cpu_env()
    if args.targets:
        rep = compat()
        print(json.dumps(rep, indent=2)) if args.json else _print_compat(rep)
        return 0 if rep["ok"] else 1
    rep = report()
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print("versions:")
        for name, v in rep["versions"].items():
            print(f"  {name:<20}{v or 'not installed'}")
        print(f"plugin entry point (sglang.srt.plugins): {rep['entry_point']}")
        print("settings:")
        for name, value in rep["settings"].items():
            print(f"  {name:<46}{value!r}")
        print("patches:")
        for p in rep["patches"]:
            print(f"  {p['name']:<52}{p['status']:<9}{p['summary']}" + (f" -- {p['detail']}" if p["detail"] else ""))
        print(f"tree ops: {rep['tree_ops']}")
    return 1 if any(p["status"] == "failed" for p in rep["patches"]) else 0
