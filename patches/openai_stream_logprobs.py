"""Streamed chat logprobs: one entry per generated token, in order, as in the non-streamed response.

SGLang 0.5.23's `sglang.srt.entrypoints.openai.serving_chat.OpenAIServingChat._generate_chat_stream`
takes each step's new logprob entries (and counts them as sent), then hands them to
`OpenAIServingChat._generate_stream_content`, which attaches them to the step's content chunk and,
without a reasoning or tool-call parser, yields no chunk at all when the step's text delta is empty:
the entries are lost. A delta is empty when the detokenizer holds back a token that is incomplete
UTF-8 on its own (`DetokenizerManager._decode_batch_token_id_output`), when the last token is EOS
(skipped in the text) and when a matched stop string is trimmed; an EAGLE-3 step loses all of its
several tokens at once. We hold the entries back together with the text and send them with the
next chunk that carries text or, at the finish, in a chunk of their own (the shape SGLang's parser
flush uses). The wrapper acts only where SGLang dropped entries, so it is a no-op once upstream
sends them. Completions (`OpenAIServingCompletion._generate_completion_stream`) send a chunk every
step, empty text or not, and lose nothing.
"""

import inspect
import json
import time

from .base import Patch, Target

MODULE = "sglang.srt.entrypoints.openai.serving_chat"
STREAM_CONTENT = f"{MODULE}:OpenAIServingChat._generate_stream_content"
SSE_CONTENT = f"{MODULE}:build_sse_content"
# `created` is a parameter since 0.5.23; 0.5.16 / 0.5.13 stamp each chunk with int(time.time())
STREAM_PARAMS = ("content", "index", "request", "stream_offsets", "choice_logprobs",
                 "finish_reason_type")
SSE_PARAMS = ("chunk_id", "created", "model", "index", "logprobs")
# stream_offsets is the one dict SGLang makes per stream and passes to every step; it keys it by
# choice index, so held entries live there under this tuple key and die with the stream.
HELD = "sglang_eagle3_ext.held_logprobs"


def _carries_logprobs(chunk) -> bool:
    if isinstance(chunk, bytes):
        chunk = chunk.decode("utf-8", "replace")
    if not isinstance(chunk, str) or not chunk.startswith("data: "):
        return False
    try:
        body = json.loads(chunk[len("data: "):])
    except ValueError:
        return False
    return isinstance(body, dict) and any(isinstance(c, dict) and c.get("logprobs")
                                          for c in body.get("choices") or ())


def _entries(choice_logprobs):
    """The entry list of a ChoiceLogprobs dict, or None for anything else (left to SGLang)."""
    if isinstance(choice_logprobs, dict) and isinstance(choice_logprobs.get("content"), list):
        return choice_logprobs["content"]
    return None


def _make(build_sse_content):
    def make(original):
        signature = inspect.signature(original)

        async def _generate_stream_content(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arg = bound.arguments
            offsets, key = arg["stream_offsets"], (HELD, arg["index"])
            held = offsets.pop(key, None) if isinstance(offsets, dict) else None
            given = arg["choice_logprobs"]
            # no logprobs asked for, none new and none held, or a caller we do not know: SGLang's
            if not isinstance(offsets, dict) or (not held and not _entries(given)):
                async for chunk in original(*bound.args, **bound.kwargs):
                    yield chunk
                return
            if held:
                given = {**(given if _entries(given) is not None else {}),
                         "content": held + (_entries(given) or [])}
                arg["choice_logprobs"] = given
            carried = False
            async for chunk in original(*bound.args, **bound.kwargs):
                carried = carried or _carries_logprobs(chunk)
                yield chunk
            if carried:
                return
            if arg["finish_reason_type"] is None:
                offsets[key] = _entries(given)  # sent with the next chunk that carries text
                return
            content, request = arg["content"], arg["request"]
            created = arg.get("created") or int(time.time())
            yield build_sse_content(chunk_id=content["meta_info"]["id"], created=created,
                                    model=request.model, index=arg["index"], logprobs=given)

        return _generate_stream_content

    return make


def plan(p) -> str:
    p.params(SSE_CONTENT, SSE_PARAMS)
    p.wrap(STREAM_CONTENT, _make(p.get(SSE_CONTENT)))
    return "OpenAIServingChat._generate_stream_content holds a step's logprobs back with its text"


PATCH = Patch("openai_stream_logprobs", "streamed chat logprobs: one entry per token (none dropped "
              "with an empty text delta)", plan, on_import=MODULE,
              targets=[Target(STREAM_CONTENT, params=STREAM_PARAMS),
                       Target(SSE_CONTENT, kind="read", params=SSE_PARAMS)])
