"""One streamed chat request over HTTP, timed: time to first token, gaps between chunks, tokens.

Time to first token = the first streamed choice (SGLang sends the assistant role with the first
token, even when that token's text is still an incomplete UTF-8 sequence); inter-token latency =
gaps between chunks that carry text.

Standard library only (urllib): the harness runs wherever the server's clients run. Output
tokens come from the server's own count (`stream_options.include_usage`), not from counting
chunks: with speculative decoding one chunk carries several tokens.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class RequestError(RuntimeError):
    pass


def get_json(url: str, timeout: float = 30) -> dict | None:
    """GET a JSON endpoint; None on 404 (the endpoint does not exist in this server)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def get_text(url: str, timeout: float = 30) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def chat_stream(base_url: str, messages: list, max_tokens: int, temperature: float = 0.0,
                ignore_eos: bool = False, model: str = "default", timeout: float = 600) -> dict:
    """POST /v1/chat/completions with stream=True; returns timings (seconds) and token counts."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens,
            "temperature": temperature, "stream": True, "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True  # SGLang's extension: always generate max_tokens
    req = urllib.request.Request(base_url.rstrip("/") + "/v1/chat/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    chunk_times, usage, first = [], None, None
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            for raw in resp:  # server-sent events: "data: {...}" lines
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise RequestError(f"server error in stream: {event['error']}")
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if first is None and ("role" in delta or delta.get("content")):
                        first = time.perf_counter()  # the server's first output after prefill
                    if delta.get("content") or delta.get("reasoning_content"):
                        chunk_times.append(time.perf_counter())
                        break
    except urllib.error.HTTPError as e:
        raise RequestError(f"HTTP {e.code} from {req.full_url}: {e.read().decode()[:500]}") from None
    end = time.perf_counter()
    if not usage or "completion_tokens" not in usage:
        raise RequestError("the stream carried no usage: this server ignores "
                           "stream_options.include_usage, so output tokens cannot be counted")
    return {"start": start, "end": end,
            "ttft_s": (first - start) if first is not None else None,
            "latency_s": end - start,
            "chunk_gaps_s": [b - a for a, b in zip(chunk_times, chunk_times[1:])],
            "completion_tokens": int(usage["completion_tokens"]),
            "prompt_tokens": int(usage.get("prompt_tokens") or 0)}
