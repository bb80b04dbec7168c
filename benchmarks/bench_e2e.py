"""One end-to-end pair: baseline vs EAGLE-3 server, tok/s at B=1 and B=32, aux layers captured.

    python benchmarks/bench_e2e.py [--out e2e.json] [--shape qwen25-7b] [--acc-len 3.3]
        [--batch 1 32] [--steps 3 --topk 4 --draft 6] [--max-new 256] [--rounds 3]
    python benchmarks/bench_e2e.py --dry-run     # CPU: tiny random models, EAGLE-3 server only

GPU: config-only model folders with the public shapes (`--load-format dummy`: random weights, no
download), a draft with SpecForge's aux layers {1, L//2-1, L-4}, SGLang's Triton attention backend
with CUDA graphs, `SGLANG_SIMULATE_ACC_LEN` forcing the accept length (random weights accept
nothing). Per server, one after the other on the same GPU: start `python -m sglang.launch_server`,
per batch size B one warm-up round and --rounds measured rounds of B concurrent /generate requests
(256 random prompt ids, --max-new tokens, greedy, ignore_eos); tok/s = output tokens / round time.
Then `/get_server_info`: SGLang's accept length and, from this plugin's scheduler state, the aux
layers captured per forward mode (`internal_states[i].eagle3_ext.aux_capture`): eager prefill,
CUDA-graph capture and target-verify must read the same layers.

--dry-run: the same code on CPU against a real SGLang server (Triton interpreter) serving the
tiny random models of sglang_eagle3_ext.tiny_models, EAGLE-3 only, B=1 and B=2, 8 tokens; the
baseline's arguments are checked by SGLang's own parser. Timings there mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from sglang_eagle3_ext.bench.loopback_server import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]

SHAPES = {  # from the public config.json files
    "qwen25-7b": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=3584,
                      intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                      num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, max_position_embeddings=32768,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu", torch_dtype="bfloat16",
                      use_sliding_window=False, sliding_window=131072, max_window_layers=28,
                      bos_token_id=151643, eos_token_id=151645),
    "glm47-flash": dict(architectures=["Glm4MoeLiteForCausalLM"], model_type="glm4_moe_lite", hidden_size=2048,
                        intermediate_size=10240, moe_intermediate_size=1536, num_hidden_layers=47,
                        num_attention_heads=20, num_key_value_heads=20, q_lora_rank=768, kv_lora_rank=512,
                        qk_nope_head_dim=192, qk_rope_head_dim=64, v_head_dim=256, n_routed_experts=64,
                        num_experts_per_tok=4, n_shared_experts=1, first_k_dense_replace=1, vocab_size=154880,
                        rope_theta=1e6, max_position_embeddings=202752, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, hidden_act="silu", torch_dtype="bfloat16", n_group=1,
                        topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.8, bos_token_id=0,
                        eos_token_id=1),
}
GPU_ARGS = ["--load-format", "dummy", "--skip-tokenizer-init", "--attention-backend", "triton",
            "--sampling-backend", "pytorch", "--grammar-backend", "none", "--mem-fraction-static", "0.85",
            "--cuda-graph-max-bs-decode", "32", "--context-length", "4096", "--log-level", "warning"]


def draft_config(target: dict, aux: list) -> dict:
    h = target["hidden_size"]
    return dict(architectures=["LlamaForCausalLMEagle3"], model_type="llama", hidden_size=h,
                intermediate_size=4 * h, num_hidden_layers=1, num_attention_heads=h // 128,
                num_key_value_heads=max(1, h // 512), head_dim=128, vocab_size=target["vocab_size"],
                draft_vocab_size=target["vocab_size"], rope_theta=target["rope_theta"],
                max_position_embeddings=target["max_position_embeddings"], rms_norm_eps=target["rms_norm_eps"],
                hidden_act="silu", torch_dtype="bfloat16", tie_word_embeddings=False,
                eagle_config={"eagle_aux_hidden_state_layer_ids": aux, "use_aux_hidden_state": True})


def config_only_models(shape: str, root: str) -> dict:
    """Target and EAGLE-3 draft folders (config.json only) for SGLang's dummy loader."""
    target = SHAPES[shape]
    L = target["num_hidden_layers"]
    aux = [1, L // 2 - 1, L - 4]
    paths = {"target": os.path.join(root, shape), "draft": os.path.join(root, shape + "-eagle3"), "aux": aux}
    for key, cfg in (("target", target), ("draft", draft_config(target, aux))):
        os.makedirs(paths[key], exist_ok=True)
        json.dump(cfg, open(os.path.join(paths[key], "config.json"), "w"), indent=1)
        json.dump({"do_sample": False}, open(os.path.join(paths[key], "generation_config.json"), "w"))
    return paths


def server_args(models: dict, speculative: bool, spec: dict, dry_run: bool) -> list:
    if dry_run:
        from sglang_eagle3_ext.cpu_defaults import CPU_ENGINE_ARGS, as_cli

        args = as_cli(CPU_ENGINE_ARGS) + ["--skip-server-warmup"]  # measure() warms up itself
    else:
        args = list(GPU_ARGS)
    args = ["--model-path", models["target"], *args]
    if speculative:
        args += ["--speculative-algorithm", "EAGLE3", "--speculative-draft-model-path", models["draft"],
                 "--speculative-num-steps", str(spec["steps"]), "--speculative-eagle-topk", str(spec["topk"]),
                 "--speculative-num-draft-tokens", str(spec["draft"])]
        if not dry_run:
            args += ["--speculative-draft-load-format", "dummy"]
    return args


def parse_only(args: list) -> None:
    """SGLang's own launch_server argument parser (flag names, choices, types), nothing started:
    the dry run checks the GPU servers' arguments this way."""
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    parser.parse_args(args)


class Server(LoopbackServer):
    """`python -m sglang.launch_server` in its own process group; boot time measured."""

    def __init__(self, args, log_path, env, boot_timeout):
        super().__init__([sys.executable, "-m", "sglang.launch_server", *args], log_path, env, boot_timeout)

    def spawned(self) -> None:
        work = os.environ.get("GPU_SESSION_WORK")
        if work:  # gpu_session.sh kills what a timed-out step leaves behind
            with open(os.path.join(work, "servers.pgid"), "a") as f:
                f.write(f"{self.proc.pid}\n")

    @property
    def boot_s(self):
        return None if self.startup_s is None else round(self.startup_s, 1)


def get_json(url, timeout=30):
    """GET url -> parsed JSON, {} for a 200 without JSON, None when unreachable / not 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            body = r.read()
            if r.status != 200:
                return None
    except OSError:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return {}


def post(url, body, timeout=600):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def measure(url, batch, rounds, max_new, prompt_len, vocab, seed=0) -> dict:
    """One warm-up round, then `rounds` rounds of `batch` concurrent greedy /generate requests."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(10, vocab) for _ in range(prompt_len)] for _ in range(batch * (rounds + 1))]
    outs, errors = {}, []

    def one(i):
        try:
            outs[i] = post(url + "/generate", {"input_ids": prompts[i], "sampling_params": {
                "max_new_tokens": max_new, "temperature": 0, "ignore_eos": True}})
        except Exception as e:  # reported in the result, the round still ends
            errors.append(f"{type(e).__name__}: {e}")

    def run_round(k):
        threads = [threading.Thread(target=one, args=(k * batch + j,)) for j in range(batch)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - t0

    run_round(0)
    times = [run_round(k) for k in range(1, rounds + 1)]
    measured = [outs[i] for i in range(batch, batch * (rounds + 1)) if i in outs]
    tokens = sum(len(o.get("output_ids", [])) for o in measured)
    verify = sum(o.get("meta_info", {}).get("spec_verify_ct", 0) or 0 for o in measured)
    return {"batch": batch, "rounds": rounds, "max_new": max_new, "tokens": tokens,
            "seconds": round(sum(times), 3), "tok_s": round(tokens / sum(times), 1) if tokens else None,
            "accept_length": round(tokens / verify, 3) if verify else None,
            "first_ids": measured[0]["output_ids"][:8] if measured else None, "errors": errors[:3] or None}


def aux_capture(info: dict) -> dict:
    """This plugin's record of captured aux layers per forward mode, from every scheduler."""
    states = (info or {}).get("internal_states") or []
    logs = [s.get("eagle3_ext", {}).get("aux_capture") for s in states if isinstance(s, dict)]
    logs = [l for l in logs if l]
    layers = {json.dumps(v.get("layers_entering")) for l in logs for v in l.values()}
    return {"per_mode": logs[0] if logs else None, "modes": sorted(logs[0]) if logs else [],
            "agree": len(layers) == 1 if layers else None,
            "accept_length": next((s.get("avg_spec_accept_length") for s in states
                                   if isinstance(s, dict) and s.get("avg_spec_accept_length")), None)}


def run_server(name, args, env, opts, log_dir) -> dict:
    row = {"server": name, "command": shlex.join(["python3", "-m", "sglang.launch_server", *args]),
           "env": {k: env[k] for k in ("SGLANG_SIMULATE_ACC_LEN", "TRITON_INTERPRET") if k in env}}
    try:
        with Server(args, os.path.join(log_dir, f"server_{name}.log"), env, opts.boot_timeout) as srv:
            row["boot_s"] = srv.boot_s
            row["runs"] = [measure(srv.url, b, opts.rounds, opts.max_new, opts.prompt_len, opts.vocab, seed=b)
                           for b in opts.batch]
            info = get_json(srv.url + "/get_server_info", 60)
            row["aux_capture"] = aux_capture(info)
    except Exception as e:  # one server failing still reports the other
        row["error"] = f"{type(e).__name__}: {e}"[-3000:]
    return row


def table(result) -> str:
    lines = ["| server | boot s | B | tok/s | accept length | aux layers per mode | agree |",
             "|---|---|---|---|---|---|---|"]
    for s in result["servers"]:
        aux = s.get("aux_capture") or {}
        modes = "; ".join(f"{m}: {v.get('layers_entering')}" for m, v in (aux.get("per_mode") or {}).items()) or "-"
        for r in s.get("runs") or [{}]:
            lines.append(f"| {s['server']} | {s.get('boot_s', '-')} | {r.get('batch', '-')} | {r.get('tok_s', '-')} | "
                         f"{r.get('accept_length') or aux.get('accept_length') or '-'} | {modes} | "
                         f"{aux.get('agree', '-')} |")
        if "error" in s:
            lines.append(f"| {s['server']} | FAILED: {s['error'].splitlines()[0][:150]} | | | | | |")
    for b, x in (result.get("speedup") or {}).items():
        lines.append(f"\nspeedup at B={b}: {x:.2f}x")
    return "\n".join(lines)


def _stop(signum, frame):  # a time limit's SIGTERM: leave through the with-blocks, servers stopped
    raise SystemExit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGTERM, _stop)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write results JSON here")
    p.add_argument("--shape", default="qwen25-7b", choices=sorted(SHAPES))
    p.add_argument("--acc-len", type=float, default=3.3, help="SGLANG_SIMULATE_ACC_LEN of the EAGLE-3 server")
    p.add_argument("--batch", type=int, nargs="+", help="concurrent requests (default 1 32; dry run 1 2)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--topk", type=int, default=4)
    p.add_argument("--draft", type=int, default=6)
    p.add_argument("--max-new", type=int, help="tokens per request (default 256; dry run 8)")
    p.add_argument("--rounds", type=int, help="measured rounds per B (default 3; dry run 1)")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--boot-timeout", type=float, default=240, help="seconds for a server to become healthy")
    p.add_argument("--only", choices=["baseline", "eagle3"], help="run one server")
    p.add_argument("--log-dir", help="server logs (default: next to --out)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny random models, EAGLE-3 server only")
    opts = p.parse_args(argv)
    opts.batch = opts.batch or ([1, 2] if opts.dry_run else [1, 32])
    opts.max_new = opts.max_new or (8 if opts.dry_run else 256)
    opts.rounds = opts.rounds or (1 if opts.dry_run else 3)
    spec = dict(steps=opts.steps, topk=opts.topk, draft=opts.draft)
    work = tempfile.mkdtemp(prefix="bench-e2e-")
    log_dir = opts.log_dir or (os.path.dirname(os.path.abspath(opts.out)) if opts.out else work)
    os.makedirs(log_dir, exist_ok=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1", SGLANG_EAGLE3_EXT_SELFCHECK="off")  # probes: no signal here
    if opts.dry_run:
        from sglang_eagle3_ext.tiny_models import build_demo_models

        demo = build_demo_models(os.path.join(work, "models"))
        models = {"target": demo["target"], "draft": demo["random_draft"]}
        opts.vocab, opts.prompt_len = 300, min(opts.prompt_len, 16)
        env["TRITON_INTERPRET"] = "1"
    else:
        models = config_only_models(opts.shape, os.path.join(work, "models"))
        opts.vocab = SHAPES[opts.shape]["vocab_size"]
        env["TRITON_INTERPRET"] = "0"
    base_args = server_args(models, False, spec, opts.dry_run)
    spec_args = server_args(models, True, spec, opts.dry_run)

    result = {"mode": "dry-run" if opts.dry_run else "cuda", "shape": "tiny" if opts.dry_run else opts.shape,
              "python": platform.python_version(), "spec": spec, "simulated_accept_length": opts.acc_len,
              "settings": {k: getattr(opts, k) for k in ("batch", "max_new", "rounds", "prompt_len")},
              "aux_layer_ids": models.get("aux"), "servers": []}
    plan = [("baseline", base_args, env), ("eagle3", spec_args, dict(env, SGLANG_SIMULATE_ACC_LEN=str(opts.acc_len)))]
    if opts.dry_run:  # one CPU server start is the cost that matters in CI: the speculative one
        plan = plan[1:]
        gpu_models = config_only_models(opts.shape, os.path.join(work, "gpu-models"))
        result["gpu_args_parsed"] = []
        for speculative in (False, True):
            args = server_args(gpu_models, speculative, spec, False)
            parse_only(args)
            result["gpu_args_parsed"].append(shlex.join(args))
    if opts.only:
        plan = [x for x in plan if x[0] == opts.only]
    for name, args, e in plan:
        print(f"{name}: starting", flush=True)
        result["servers"].append(run_server(name, args, e, opts, log_dir))
        print(json.dumps(result["servers"][-1], default=str)[:2000], flush=True)
        if opts.out:  # the baseline survives a time limit hit during the EAGLE-3 server
            Path(opts.out).write_text(json.dumps(dict(result, partial=True), indent=1, default=str))
    tok = {s["server"]: {r["batch"]: r["tok_s"] for r in s.get("runs", [])} for s in result["servers"]}
    if "baseline" in tok and "eagle3" in tok:
        result["speedup"] = {b: tok["eagle3"][b] / tok["baseline"][b] for b in tok["baseline"]
                             if tok["baseline"].get(b) and tok["eagle3"].get(b)}
    spec_row = next((s for s in result["servers"] if s["server"] == "eagle3"), {})
    result["ok"] = (all("error" not in s for s in result["servers"]) and bool(result["servers"])
                    and all(r.get("tokens") and not r.get("errors") for s in result["servers"] for r in s["runs"])
                    and (spec_row.get("aux_capture") or {}).get("agree") is True)
    print()
    print(table(result))
    if opts.out:
        Path(opts.out).write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {opts.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
