"""`python -m sglang_eagle3_ext.bench`: baseline vs EAGLE3 over HTTP, the published drafts' protocol.

  --baseline-url URL --eagle3-url URL   both servers (run one after the other)
  --url URL [--label NAME]              one server; combine runs later with --from-json
  --from-json A.json B.json             render the table from saved runs

Protocol (flags scale it): temperature 0, max_tokens 512; B=1: 5 warm-up + 20 measured requests,
B=32: 15 warm-up + 60 measured; throughput = output tokens / wall time; acceptance from the
server's Prometheus counters (--enable-metrics) over the measured window.

--simulate-accept-length X labels the results "simulated" for dummy-weight servers: the server
itself must run with SGLANG_SIMULATE_ACC_LEN=X (`python -m sglang_eagle3_ext.launch PRESET
--simulate-accept-length X` sets it); a client cannot. It also sets --ignore-eos.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys

from . import report
from .prompts import BUILTIN, PromptFileError, load_prompts
from .runner import Options, default_counts, run_server


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected integers separated by commas") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected non-negative integers")
    return values


def _per_batch(values, batch_sizes, index, flag):
    if values is None:
        return [default_counts(b)[index] for b in batch_sizes]
    if len(values) == 1:
        return values * len(batch_sizes)
    if len(values) != len(batch_sizes):
        sys.exit(f"error: {flag} has {len(values)} values for {len(batch_sizes)} batch sizes")
    return values


class _Progress:
    """tqdm when installed, else one line per finished request count."""

    def __init__(self, total, desc, enabled):
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="req", file=sys.stderr, leave=False)
        except ImportError:
            self.total, self.desc, self.n = total, desc, 0

    def update(self, n=1):
        if self.bar is not None:
            self.bar.update(n)
        elif hasattr(self, "n"):
            self.n += n
            print(f"{self.desc}: {self.n}/{self.total}", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m sglang_eagle3_ext.bench", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("servers")
    src.add_argument("--baseline-url")
    src.add_argument("--eagle3-url")
    src.add_argument("--url", help="one server")
    src.add_argument("--label", help="name of the --url run (default: eagle3 if it speculates, else baseline)")
    src.add_argument("--from-json", nargs="+", metavar="FILE", help="combine saved runs, no requests")
    proto = p.add_argument_group("protocol")
    proto.add_argument("--batch-sizes", type=_ints, default=[1, 32])
    proto.add_argument("--warmup", type=_ints, help="warm-up requests per batch size (default 5 at B=1, else 15)")
    proto.add_argument("--measured", type=_ints, help="measured requests per batch size (default 20 at B=1, else 60)")
    proto.add_argument("--max-tokens", type=int, default=512)
    proto.add_argument("--temperature", type=float, default=0.0)
    proto.add_argument("--ignore-eos", action="store_true", help="always generate max_tokens")
    proto.add_argument("--prompts", help=f"JSONL / JSON / ShareGPT file (default: built-in, {BUILTIN})")
    proto.add_argument("--model", default="default", help="model name sent in requests")
    proto.add_argument("--timeout", type=float, default=600, help="seconds per request")
    proto.add_argument("--no-flush-cache", action="store_true", help="keep the prefix cache between batch sizes")
    proto.add_argument("--simulate-accept-length", type=float, metavar="X",
                       help="label results simulated (server launched with SGLANG_SIMULATE_ACC_LEN=X)")
    out = p.add_argument_group("output")
    out.add_argument("--out-json", help="write the JSON record here")
    out.add_argument("--out-md", help="write the Markdown tables here")
    out.add_argument("--plot", help="write a PNG (speedup, accept length per B); needs matplotlib")
    out.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not (args.from_json or args.url or args.baseline_url or args.eagle3_url):
        p.error("give --baseline-url and/or --eagle3-url, --url, or --from-json")
    if args.url and (args.baseline_url or args.eagle3_url):
        p.error("--url is for one server; use --baseline-url / --eagle3-url for two")
    return args


def measure(args, argv) -> dict:
    try:
        prompts = load_prompts(args.prompts)
    except PromptFileError as e:
        sys.exit(f"error: {e}")
    bs = args.batch_sizes
    counts = dict(zip(bs, zip(_per_batch(args.warmup, bs, 0, "--warmup"),
                              _per_batch(args.measured, bs, 1, "--measured"))))
    opts = Options(max_tokens=args.max_tokens, temperature=args.temperature,
                   ignore_eos=args.ignore_eos or args.simulate_accept_length is not None,
                   model=args.model, timeout=args.timeout, flush_cache=not args.no_flush_cache)
    servers = [(report.BASELINE, args.baseline_url), ("eagle3", args.eagle3_url), (args.label, args.url)]
    runs = []
    for label, url in servers:
        if not url:
            continue
        if label is None:
            from .runner import server_info

            label = "eagle3" if server_info(url).get("speculative_algorithm") else report.BASELINE
        sim = args.simulate_accept_length if label != report.BASELINE else None

        def bar(total, desc):
            return _Progress(total, desc, not args.no_progress)

        runs.append(run_server(url, label, prompts, bs, counts, opts, sim, bar))
    return {"tool": "sglang_eagle3_ext.bench",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python -m sglang_eagle3_ext.bench " + shlex.join(argv),
            "protocol": {"temperature": opts.temperature, "max_tokens": opts.max_tokens,
                         "ignore_eos": opts.ignore_eos, "counts": {str(b): list(c) for b, c in counts.items()}},
            "prompts": {"source": args.prompts or "built-in", "count": len(prompts)},
            "runs": runs}


def combine(paths: list) -> dict:
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    first = results[0]
    return dict(first, runs=[run for r in results for run in r["runs"]],
                combined_from=list(paths))


def warnings(result: dict) -> list[str]:
    out = []
    for run in result["runs"]:
        x = run.get("simulated_accept_length")
        for p in run["phases"]:
            acc = p["acceptance"]
            if x and acc.get("accept_length") and abs(acc["accept_length"] - x) > 0.25 * x:
                out.append(f"warning: {run['label']} B={p['batch_size']} measured accept length "
                           f"{acc['accept_length']:.2f}, not the simulated {x:g}: was the server "
                           f"started with SGLANG_SIMULATE_ACC_LEN={x:g}?")
            if run["label"] != report.BASELINE and acc.get("why"):
                out.append(f"note: {run['label']} B={p['batch_size']}: {acc['why']}")
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = combine(args.from_json) if args.from_json else measure(args, argv)
    result["table"] = report.table_rows(result["runs"])
    text = report.markdown(result)
    print(text)
    for line in warnings(result):
        print(line, file=sys.stderr)
    if args.out_md:
        with open(args.out_md, "w") as f:
            f.write(text)
    if args.out_json:
        with open(args.out_json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        print(report.plot(result, args.plot), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
