"""`python -m sglang_eagle3_ext check --target PATH --draft PATH [--preset ID] [--json]`: does the draft fit?

With --preset, also the launch preset's assumptions (target shapes, aux layer ids, tree, TP) and
the pairing checks under the preset's layer-id rule.

Reads config, tokenizer and safetensors headers only (seconds, no GPU); exit 0 when every check
passes or is skipped, 1 when any fails.
"""

from __future__ import annotations

LABELS = {"ok": "ok", "fail": "FAIL", "skipped": "skipped"}


def main(argv=None) -> int:
    import argparse
    import json

    from .pairing_check import check_pair

    parser = argparse.ArgumentParser(prog="sglang_eagle3_ext check", description=__doc__)
    parser.add_argument("--target", required=True, help="target model folder")
    parser.add_argument("--draft", required=True, help="EAGLE-3 draft folder")
    parser.add_argument("--preset", help="launch preset id (python -m sglang_eagle3_ext.launch --list)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.preset:
        from .launch.presets import PresetError, get_preset
        from .launch.validate import validate_preset

        try:
            results = validate_preset(get_preset(args.preset), args.target, args.draft)
        except PresetError as e:
            parser.error(str(e))
    else:
        results = check_pair(args.target, args.draft)
    failed = [r for r in results if r.status == "fail"]
    if args.json:
        print(json.dumps({"target": args.target, "draft": args.draft, "ok": not failed,
                          "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        print(f"target: {args.target}\ndraft:  {args.draft}")
        for r in results:
            print(f"  {LABELS[r.status]:<8}{r.name:<14}{r.detail}")
        print(f"{len(failed)} of {len(results)} checks failed" if failed
              else f"all {len(results)} checks passed or skipped")
    return 1 if failed else 0
