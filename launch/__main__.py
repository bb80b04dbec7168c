"""`python -m sglang_eagle3_ext.launch PRESET [--model-path M] [--draft-path D] [launch_server args]`

Starts `python -m sglang.launch_server` with a published draft's settings: EAGLE3, its tree, TP,
memory fraction, attention backend, --enable-metrics, and the layer-id rule the draft was trained
with (SGLANG_EAGLE3_EXT_AUX_LAYER_RULE). Any further argument goes to launch_server and overrides
the preset's. Local folders are checked against the preset first.

  --list                      the presets
  --print                     show the command instead of running it
  --baseline                  the same server without speculative decoding (for benchmarks)
  --simulate-accept-length X  set SGLANG_SIMULATE_ACC_LEN=X: SGLang forces the accept length, for
                              dummy-weight (config-only) benchmarks; results are then "simulated"
  --no-check                  skip the checks of the folders against the preset
"""

from __future__ import annotations

import argparse
import os
import sys

from .presets import PresetError, format_command, get_preset, launch_command, load_presets


def list_presets() -> None:
    for pid, p in load_presets().items():
        args = p.server_args()
        print(f"{pid:<28} B={p.batch_size:<3} TP {args.get('tp_size', 1)}  steps "
              f"{args['speculative_num_steps']} / topk {args['speculative_eagle_topk']} / draft "
              f"{args['speculative_num_draft_tokens']}  rule {p.rule:<8} {p.data['title']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang_eagle3_ext.launch", allow_abbrev=False,
                                     description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", help="preset id (--list)")
    parser.add_argument("--list", action="store_true", help="list the presets")
    parser.add_argument("--model-path", help="target model (default: the preset's hub id)")
    parser.add_argument("--draft-path", help="EAGLE-3 draft (default: the preset's hub id)")
    parser.add_argument("--print", action="store_true", help="print the command, do not run it")
    parser.add_argument("--baseline", action="store_true", help="no speculative decoding")
    parser.add_argument("--simulate-accept-length", type=float, metavar="X",
                        help="SGLANG_SIMULATE_ACC_LEN=X for dummy-weight benchmarks")
    parser.add_argument("--no-check", action="store_true", help="skip the preset checks")
    args, extra = parser.parse_known_args(argv)
    if args.list:
        list_presets()
        return 0
    if not args.preset:
        parser.error("name a preset (--list shows them)")
    try:
        preset = get_preset(args.preset)
    except PresetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    top = preset.server_args()["speculative_num_steps"] + 1  # the deepest accepted path + bonus
    if args.simulate_accept_length is not None and not 1 <= args.simulate_accept_length <= top:
        print(f"error: --simulate-accept-length counts accepted tokens plus the bonus per verify "
              f"step: between 1 and {top} (speculative_num_steps + 1) for {preset.id}", file=sys.stderr)
        return 2
    model = args.model_path or preset.target["model"]
    draft = args.draft_path or preset.draft["model"]
    if not args.no_check and not args.baseline:
        from .validate import validate_preset

        failed = [r for r in validate_preset(preset, model, draft) if r.status == "fail"]
        if failed:
            print(f"error: preset {preset.id} does not fit these folders:", file=sys.stderr)
            for r in failed:
                print(f"  {r.name}: {r.detail}", file=sys.stderr)
            print("(--no-check starts the server anyway)", file=sys.stderr)
            return 1
    cmd, env = launch_command(preset, model, draft, extra, baseline=args.baseline,
                              simulate_accept_length=args.simulate_accept_length)
    if args.print:
        print(format_command(cmd, env))
        return 0
    print(f"launch: {format_command(cmd, env)}", flush=True)
    os.execve(cmd[0], cmd, dict(os.environ, **env))  # the server takes this process's place


if __name__ == "__main__":
    sys.exit(main())
