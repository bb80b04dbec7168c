"""`python -m sglang_eagle3_ext check --target PATH --draft PATH [--json]`: does the draft fit?

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
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
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
