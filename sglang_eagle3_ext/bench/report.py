"""The benchmark's outputs: a Markdown table like the model cards', the JSON record, a PNG plot."""

from __future__ import annotations

BASELINE = "baseline"


def _fmt(value, pattern="{:.1f}", none="-"):
    return none if value is None else pattern.format(value)


def table_rows(runs: list) -> list:
    """One row per (speculative run, batch size): baseline vs that run, as in the model cards."""
    base = next((r for r in runs if r["label"] == BASELINE), None)
    base_by_b = {p["batch_size"]: p for p in base["phases"]} if base else {}
    rows = []
    for run in runs:
        if run["label"] == BASELINE:
            continue
        for p in run["phases"]:
            b = base_by_b.get(p["batch_size"])
            acc = p["acceptance"]
            base_tps = b["throughput_tok_s"] if b else None
            rows.append({"run": run["label"], "batch_size": p["batch_size"],
                         "baseline_tok_s": base_tps, "eagle3_tok_s": p["throughput_tok_s"],
                         "speedup": p["throughput_tok_s"] / base_tps if base_tps else None,
                         "accept_length": acc.get("accept_length"), "accept_rate": acc.get("accept_rate"),
                         "acceptance_source": acc.get("source"),
                         "simulated_accept_length": run.get("simulated_accept_length")})
    if not rows and base:  # a baseline-only run: its throughput alone
        rows = [{"run": BASELINE, "batch_size": p["batch_size"], "baseline_tok_s": p["throughput_tok_s"],
                 "eagle3_tok_s": None, "speedup": None, "accept_length": None, "accept_rate": None,
                 "acceptance_source": None, "simulated_accept_length": None} for p in base["phases"]]
    return rows


SOURCES = {"eagle3_ext": "this plugin's counters (sglang:eagle3_verify_steps_total, "
                         "sglang:eagle3_accepted_tokens_total; 1 + accepted / steps)",
           "sglang": "SGLang's counters ((sglang:generation_tokens_total - sglang:num_requests_total) "
                     "/ sglang:spec_verify_calls_total: each request's first token comes from prefill)"}


def markdown(result: dict) -> str:
    runs, rows = result["runs"], result["table"]
    lines = []
    simulated = sorted({r["simulated_accept_length"] for r in runs if r.get("simulated_accept_length")})
    if simulated:
        lines += [f"**Simulated acceptance**: the speculative server ran with SGLANG_SIMULATE_ACC_LEN="
                  f"{', '.join(f'{x:g}' for x in simulated)}; these are speeds at that accept length, "
                  f"not a measure of a draft.", ""]
    for name in dict.fromkeys(r["run"] for r in rows):
        title = "EAGLE3" if name in ("eagle3", BASELINE) else name
        lines += [f"| B | Baseline tok/s | {title} tok/s | Speedup | Accept Rate | Accept Length |",
                  "|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["run"] == name):
            lines.append(f"| {r['batch_size']} | {_fmt(r['baseline_tok_s'])} | {_fmt(r['eagle3_tok_s'])} | "
                         f"{_fmt(r['speedup'], '{:.2f}x')} | {_fmt(r['accept_rate'], '{:.1%}')} | "
                         f"{_fmt(r['accept_length'], '{:.2f}')} |")
        lines.append("")
    lines += ["| Run | B | Requests | Output tokens | Wall s | tok/s | TTFT p50 / p90 / p99 ms | "
              "ITL p50 / p90 / p99 ms | TPOT p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for p in run["phases"]:
            def trio(d):
                return "-" if not d else f"{d['p50']:.1f} / {d['p90']:.1f} / {d['p99']:.1f}"
            lines.append(f"| {run['label']} | {p['batch_size']} | {p['measured_requests']} | "
                         f"{p['output_tokens']} | {p['wall_s']:.2f} | {_fmt(p['throughput_tok_s'])} | "
                         f"{trio(p['ttft_ms'])} | {trio(p['itl_ms'])} | "
                         f"{_fmt((p['tpot_ms'] or {}).get('p50'))} |")
    proto = result.get("protocol", {})
    lines += ["", f"Protocol: temperature {proto.get('temperature')}, max_tokens {proto.get('max_tokens')}"
              f"{', ignore_eos' if proto.get('ignore_eos') else ''}; warm-up + measured requests per B: "
              + ", ".join(f"B={b}: {w} + {m}" for b, (w, m) in proto.get("counts", {}).items())
              + f"; prompts: {result.get('prompts', {}).get('source')} "
                f"({result.get('prompts', {}).get('count')}). Throughput = output tokens / wall time "
                f"of the measured requests; ITL = gaps between streamed chunks (a chunk may carry "
                f"several tokens under speculative decoding)."]
    for src in sorted({r["acceptance_source"] for r in rows if r["acceptance_source"]}):
        lines.append(f"Acceptance: deltas over the measured window of {SOURCES[src]}; "
                     f"accept rate = accept length / draft tokens per step.")
    for run in runs:
        s = run.get("server") or {}
        lines.append(f"{run['label']}: {run['url']} — {s.get('model_path', '?')}, SGLang "
                     f"{s.get('version', '?')}" + (f", EAGLE3 steps {s.get('speculative_num_steps')} / topk "
                     f"{s.get('speculative_eagle_topk')} / draft {s.get('speculative_num_draft_tokens')}"
                     if s.get("speculative_algorithm") else ""))
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> str:
    """Speedup and accept length per batch size as a PNG; says why when it cannot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"plot skipped: matplotlib is not installed (pip install matplotlib), {path} not written"
    rows = [r for r in result["table"] if r["speedup"] is not None]
    if not rows:
        return "plot skipped: no baseline + speculative pair to compare"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == name]
        xs = [str(r["batch_size"]) for r in mine]
        ax1.bar(xs, [r["speedup"] for r in mine], label=name)
        ax2.bar(xs, [r["accept_length"] or 0 for r in mine], label=name)
    ax1.axhline(1.0, color="gray", lw=0.8)
    ax1.set(title="Speedup vs baseline", xlabel="batch size", ylabel="x")
    ax2.set(title="Accept length", xlabel="batch size", ylabel="tokens / verify step")
    if any(r["simulated_accept_length"] for r in rows):
        fig.suptitle("simulated acceptance (SGLANG_SIMULATE_ACC_LEN)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"
