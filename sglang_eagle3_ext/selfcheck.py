"""Startup self-check: does the draft actually agree with the target?

The most common EAGLE-3 failure is silent: draft and target disagree (aux layer ids of another
convention, a wrong d2t vocab map, a draft for another target, a dtype mix-up), the server runs,
accept length sits near 1.0 and throughput falls below serving without a draft. Once SGLang's
own warmup request has passed, we send a few greedy probe requests through the server's
`/generate` (the normal request path) and read SGLang's own per-request counts back
(meta_info spec_verify_ct, spec_num_correct_drafts):

    accept length = 1 + accepted draft tokens / verify steps

Below SGLANG_EAGLE3_EXT_SELFCHECK_MIN_ACCEPT_LENGTH (default 1.1: the draft almost never
agrees) the check fails. SGLANG_EAGLE3_EXT_SELFCHECK:
    warn (default)  log one warning naming the likely causes and the `check` CLI; serve anyway
    strict          log the error and fail startup (the server exits with code 1)
    off             send no probe traffic
The server answers /health with 503 while the probes run (as during SGLang's warmup). The
result is in /get_server_info -> internal_states[i].eagle3_ext.selfcheck and, with
--enable-metrics, in sglang:eagle3_selfcheck_accept_length / sglang:eagle3_selfcheck_passed.
`--skip-server-warmup` skips the self-check too (no startup traffic at all). The offline engine
runs the same probes from its constructor (run_for_engine).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

from .errors import Eagle3ConfigError
from .settings import BY_NAME
from .settings import settings as all_settings
from .state import STATE

logger = logging.getLogger("sglang_eagle3_ext")

MODE_ENV = BY_NAME["selfcheck"].env
MIN_ENV = BY_NAME["selfcheck_min_accept_length"].env
TOKENS_ENV = BY_NAME["selfcheck_tokens"].env
STRICT_EXIT_CODE = 1

# Short, ordinary prompts: any draft trained for its target agrees on some of these tokens.
PROBES = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "1, 2, 3, 4, 5, 6,",
    "Large language models generate text one token at a time because",
]

# The outcome in this (HTTP server) process, shown by /get_server_info.
RESULT: dict = STATE.selfcheck


def settings() -> tuple[str, float, int]:
    """(mode, min accept length, max new tokens per probe); bad values raise Eagle3ConfigError."""
    s = all_settings()
    return s.selfcheck, s.selfcheck_min_accept_length, s.selfcheck_tokens


def measure(responses: list, num_draft_tokens: int) -> dict:
    """Acceptance from the probes' meta_info, as SGLang counted it."""
    steps = sum(r["meta_info"].get("spec_verify_ct", 0) for r in responses)
    accepted = sum(r["meta_info"].get("spec_num_correct_drafts", 0) for r in responses)
    out = {"probes": len(responses), "verify_steps": steps, "accepted_tokens": accepted,
           "draft_tokens": steps * (num_draft_tokens - 1), "num_draft_tokens": num_draft_tokens}
    if steps:
        out["accept_length"] = 1 + accepted / steps
        out["accept_rate"] = out["accept_length"] / num_draft_tokens
    return out


def judge(measured: dict, min_accept: float) -> dict:
    if not measured.get("verify_steps"):
        return dict(measured, status="unavailable", min_accept_length=min_accept)
    passed = measured["accept_length"] >= min_accept
    return dict(measured, status="passed" if passed else "failed", min_accept_length=min_accept)


def failure_message(result: dict, target: str, draft: str) -> str:
    return (f"sglang-eagle3-ext: SELF-CHECK FAILED: EAGLE-3 accept length "
            f"{result['accept_length']:.2f} over {result['probes']} greedy probes "
            f"({result['accepted_tokens']} of {result['draft_tokens']} draft tokens accepted in "
            f"{result['verify_steps']} verify steps; threshold {result['min_accept_length']:.2f}): the "
            f"draft almost never agrees with the target, so speculative decoding is slower than none. "
            f"Likely causes: aux layer ids trained with the other convention (try "
            f"SGLANG_EAGLE3_EXT_AUX_LAYER_RULE=entering), a wrong or missing d2t vocab mapping, a draft "
            f"trained for another target or tokenizer, or a dtype mismatch (FP8 target, bf16 draft). "
            f"Run: python -m sglang_eagle3_ext check --target {target} --draft {draft}")


def pass_message(result: dict) -> str:
    return (f"sglang-eagle3-ext: self-check passed: accept length {result['accept_length']:.2f} "
            f"(accept rate {result['accept_rate']:.2f} of {result['num_draft_tokens']} draft tokens) "
            f"over {result['probes']} greedy probes, {result['verify_steps']} verify steps")


def _post_probes(server_args, tokens: int) -> list:
    import requests

    headers = {}
    api_key = getattr(server_args, "api_key", None)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    text_or_ids, probes = _probes(server_args)
    body = {"text" if text_or_ids == "prompt" else "input_ids": probes,
            "sampling_params": _sampling(tokens)}
    res = requests.post(server_args.url() + "/generate", json=body,
                        headers=headers, timeout=600, verify=_ssl_verify(server_args))
    res.raise_for_status()
    out = res.json()
    return out if isinstance(out, list) else [out]


def _ssl_verify(server_args):
    try:
        from sglang.srt.arg_groups.serving_hook import ssl_verify_of

        return ssl_verify_of(server_args)
    except ImportError:
        verify = getattr(server_args, "ssl_verify", None)
        return verify() if callable(verify) else True


def _export(result: dict, tokenizer_manager, server_args) -> None:
    if not getattr(server_args, "enable_metrics", False) or "accept_length" not in result:
        return
    from prometheus_client import Gauge

    labels = dict(getattr(getattr(tokenizer_manager, "metrics_collector", None), "labels", None)
                  or {"model_name": getattr(server_args, "served_model_name", None) or ""})
    names = list(labels)
    length = STATE.metric(Gauge, "sglang:eagle3_selfcheck_accept_length",
                          "Accept length measured by the startup self-check's greedy probes.",
                          names, multiprocess_mode="mostrecent")
    passed = STATE.metric(Gauge, "sglang:eagle3_selfcheck_passed",
                          "1 when the startup self-check passed, 0 when it failed.",
                          names, multiprocess_mode="mostrecent")
    length.labels(**labels).set(result["accept_length"])
    passed.labels(**labels).set(1.0 if result["status"] == "passed" else 0.0)


def run(server_args, tokenizer_manager=None, probe=None, abort=None) -> Optional[dict]:
    """Probe, judge, log, export. Returns the result; in strict mode a failure calls abort(message)
    (default: end the server process). probe(tokens) -> responses defaults to the server's /generate."""
    probe = probe or (lambda tokens: _post_probes(server_args, tokens))
    abort = abort or _abort_server
    algo = str(getattr(server_args, "speculative_algorithm", None) or "").upper()
    if algo not in ("EAGLE", "EAGLE3"):
        RESULT.update(status="skipped", reason="no EAGLE speculative decoding")
        return RESULT
    try:
        mode, min_accept, tokens = settings()
    except Eagle3ConfigError as e:  # a setting we cannot read: stop rather than guess
        logger.error("sglang-eagle3-ext: error: %s", e)
        return abort(str(e))
    if mode == "off":
        RESULT.update(status="off", reason=f"{MODE_ENV}=off")
        logger.info("sglang-eagle3-ext: self-check off (%s=off)", MODE_ENV)
        return RESULT
    num_draft_tokens = int(getattr(server_args, "speculative_num_draft_tokens", 0) or 0)
    try:
        result = judge(measure(probe(tokens), num_draft_tokens), min_accept)
    except Exception as e:
        result = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    result["mode"] = mode
    RESULT.clear()
    RESULT.update(result)
    if result["status"] in ("error", "unavailable"):
        logger.warning("sglang-eagle3-ext: self-check could not measure acceptance (%s); serving "
                       "without it", result.get("reason", "the server reported no verify steps"))
        return RESULT
    _export(result, tokenizer_manager, server_args)
    if result["status"] == "passed":
        logger.info(pass_message(result))
        return RESULT
    message = failure_message(result, server_args.model_path, server_args.speculative_draft_model_path)
    if mode != "strict":
        logger.warning(message + f" (set {MODE_ENV}=strict to fail startup instead, =off to skip the check)")
        return RESULT
    logger.error(message)
    return abort(message)


def run_for_engine(engine) -> Optional[dict]:
    """The same check for the offline engine (sgl.Engine / sgl.LLM), through engine.generate. A
    strict failure shuts the engine down and raises Eagle3ConfigError from its constructor; a
    warning also goes out as a Python warning (Engine sets SGLang's log level to 'error')."""
    import warnings

    server_args = engine.server_args

    def probe(tokens):
        text_or_ids, probes = _probes(server_args)
        out = engine.generate(**{text_or_ids: probes}, sampling_params=_sampling(tokens))
        return out if isinstance(out, list) else [out]

    def abort(message):
        engine.shutdown()
        raise Eagle3ConfigError(f"{message} (sgl.Engine startup aborted by the self-check; "
                                f"{MODE_ENV}=warn serves anyway, =off skips the probes)")

    result = run(server_args, getattr(engine, "tokenizer_manager", None), probe=probe, abort=abort)
    if result.get("status") == "failed":
        warnings.warn(failure_message(result, server_args.model_path,
                                      server_args.speculative_draft_model_path),
                      RuntimeWarning, stacklevel=3)
    return result


def _probes(server_args) -> tuple[str, list]:
    """("prompt", texts), or ("input_ids", token ids) when the server runs without a tokenizer."""
    if getattr(server_args, "skip_tokenizer_init", False):
        return "input_ids", [[10 + 7 * i + j for j in range(8)] for i in range(len(PROBES))]
    return "prompt", PROBES


def _sampling(tokens: int) -> dict:
    return {"temperature": 0.0, "max_new_tokens": tokens, "ignore_eos": True}


def _abort_server(message: str) -> None:
    logger.error("sglang-eagle3-ext: startup aborted by the self-check (%s=strict); exiting with code %d",
                 MODE_ENV, STRICT_EXIT_CODE)
    _exit_server(STRICT_EXIT_CODE)


def _exit_server(code: int) -> None:
    """Stop the schedulers and this process with a non-zero exit code (as SGLang's warmup failure
    does, but with a code of our own instead of SIGKILL)."""
    import sys

    from sglang.srt.utils import kill_process_tree

    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    kill_process_tree(os.getpid(), include_parent=False)
    os._exit(code)
