"""Command line: `python -m sglang_eagle3_ext {doctor,demo,check,launch,bench}` (also the `sglang-eagle3-ext` script)."""

import sys

COMMANDS = {
    "doctor": ("sglang_eagle3_ext.doctor", "versions, patches applied, tree-op implementation"),
    "demo": ("sglang_eagle3_ext.demo", "tiny target + EAGLE-3 drafts served by real SGLang"),
    "check": ("sglang_eagle3_ext.check_cli", "does an EAGLE-3 draft fit its target (config, d2t, layer ids, tokenizer)"),
    "launch": ("sglang_eagle3_ext.launch.__main__", "launch_server with a published draft's preset (--list)"),
    "bench": ("sglang_eagle3_ext.bench.__main__", "baseline vs EAGLE3 throughput and acceptance over HTTP"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m sglang_eagle3_ext {" + ",".join(COMMANDS) + "} [args]")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<8}{text}")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
