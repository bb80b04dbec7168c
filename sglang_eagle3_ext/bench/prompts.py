"""Benchmark prompts: the built-in set (prompts.jsonl: chat, code, math, summarization, written
for this project) or a user file.

User files: JSONL, one object per line with "prompt" (a string) or "messages" (OpenAI chat
messages); or JSON, a list of such objects or ShareGPT records ({"conversations": [{"from":
"human", "value": ...}, ...]}, of which the turns up to the first human turn are used).
Every prompt becomes chat messages; a bad record names its file and line.
"""

from __future__ import annotations

import json
import os

BUILTIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts.jsonl")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}


class PromptFileError(ValueError):
    pass


def _sharegpt(turns: list, where: str) -> list[dict]:
    messages = []
    for turn in turns:
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None or not isinstance(turn.get("value"), str):
            raise PromptFileError(f"{where}: ShareGPT turn {turn!r} needs 'from' (human/gpt/system) "
                                  f"and a string 'value'")
        messages.append({"role": role, "content": turn["value"]})
        if role == "user":  # the benchmark asks the first question; the model writes the answer
            return messages
    raise PromptFileError(f"{where}: ShareGPT conversation has no human turn")


def to_messages(record, where: str) -> list[dict]:
    """One record of a prompt file -> chat messages."""
    if isinstance(record, dict):
        if isinstance(record.get("prompt"), str) and record["prompt"]:
            return [{"role": "user", "content": record["prompt"]}]
        msgs = record.get("messages")
        if isinstance(msgs, list) and msgs and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in msgs):
            return msgs
        if isinstance(record.get("conversations"), list):
            return _sharegpt(record["conversations"], where)
    raise PromptFileError(f"{where}: expected an object with a non-empty 'prompt' string, 'messages' "
                          f"(a list of {{role, content}}) or ShareGPT 'conversations'")


def load_prompts(path: str | None = None) -> list[dict]:
    """[{"messages": [...], "category": ...}] from the built-in set or a user file."""
    path = path or BUILTIN
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise PromptFileError(f"prompt file {path!r} cannot be read ({e.strerror})") from None
    records = []
    if path.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((json.loads(line), f"{path}:{n}"))
                except ValueError as e:
                    raise PromptFileError(f"{path}:{n}: not JSON ({e})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise PromptFileError(f"{path}: not JSON ({e}); one object per line needs a .jsonl name") from None
        if not isinstance(data, list):
            raise PromptFileError(f"{path}: expected a JSON list of prompts or ShareGPT records")
        records = [(r, f"{path}: record {i}") for i, r in enumerate(data)]
    prompts = [{"messages": to_messages(r, where), "category": (r.get("category") or "user")}
               for r, where in records]
    if not prompts:
        raise PromptFileError(f"{path}: no prompts")
    return prompts


def pick(prompts: list, start: int, count: int) -> list:
    """count prompts from position start, wrapping around: each phase gets its own slice."""
    return [prompts[(start + i) % len(prompts)] for i in range(count)]
