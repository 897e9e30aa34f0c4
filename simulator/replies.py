"""The deterministic answer to a request: thinking, text, tool calls, stop reason and usage.

Thinking (when the request turns it on) opens the answer with a signed ``thinking``
block of ``thinking_words`` words (default by ``output_config.effort``: low 8, medium
16, high 32, xhigh 48, max 64; never more than ``budget_tokens``), plus a
``redacted_thinking`` block with the ``redacted_thinking`` marker; thinking counts as
output tokens and within ``max_tokens``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import cycle, islice

from .caching import CacheUsage
from .errors import bad
from .options import MARKER, Sim
from .schema import example_from_schema
from .signing import redacted_data, sign_thinking
from .validate import Request

TOOL_CALL_OVERHEAD_TOKENS = 10
THINKING_WORDS = {"low": 8, "medium": 16, "high": 32, "xhigh": 48, "max": 64}  # by output_config.effort
REDACTED_THINKING_TOKENS = 32
_JSON_REPLY = '{"answer": 42}'
_TOOL_PREAMBLE = "Let me check."
_FILLER_WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the", "simulator",
                 "streams", "tokens"]
_DEFAULT_STOP_SEQUENCE = "\n\nHuman:"


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    input: object
    input_json: str

    @property
    def tokens(self) -> int:
        return -(-len(self.input_json) // 4) + TOOL_CALL_OVERHEAD_TOKENS


@dataclass(slots=True)
class Reply:
    text: str
    tools: list[ToolCall] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    output_tokens: int = 1
    thinking: str | None = None  # the thinking block's text as sent ("" when display is omitted)
    signature: str = ""
    redacted: str | None = None  # a redacted_thinking block's data


def new_id(prefix: str) -> str:
    return prefix + os.urandom(11).hex()


@lru_cache(maxsize=64)
def _filler(words: int) -> str:
    return " ".join(islice(cycle(_FILLER_WORDS), words))


def _snippet(last_user_text: str) -> str:
    words = MARKER.sub(" ", last_user_text).split()[:6]
    return " ".join(words).rstrip(".!?,;:") or "your message"


def _default_text(last_user_text: str) -> str:
    return f"Simulated reply to: {_snippet(last_user_text)}. This is a deterministic answer."


def _thinking_text(last_user_text: str, words: int) -> str:
    intro = f"The user wrote: {_snippet(last_user_text)}. I will answer directly and keep it short."
    pieces = intro.split(" ")
    return " ".join(pieces[:words]) if words <= len(pieces) else intro + " " + _filler(words - len(pieces))


def _output_schema(req: dict) -> object | None:
    for fmt in ((req.get("output_config") or {}).get("format"), req.get("output_format")):
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return fmt.get("schema") or {}
    return None


def _reply_text(req: dict, sim: Sim, last_user_text: str) -> str:
    schema = _output_schema(req)
    if schema is not None:
        return _json_text(example_from_schema(schema))
    if sim.reply == "json":
        return _JSON_REPLY
    if sim.words is not None:
        return _filler(sim.words)
    return _default_text(last_user_text)


def _tool_calls(req: dict, sim: Sim) -> tuple[list[ToolCall], bool]:
    """The tool calls to answer with, and whether tool_choice forces them."""
    tools = [t for t in req.get("tools") or () if isinstance(t, dict) and "input_schema" in t]
    choice = req.get("tool_choice") or {}
    kind = choice.get("type", "auto")
    forced = kind in ("any", "tool")
    if not tools or kind == "none" or not (forced or sim.tool or sim.parallel_tools):
        return [], False
    if kind == "tool":
        chosen = [t for t in tools if t.get("name") == choice.get("name")][:1]
        if not chosen:
            raise bad(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")
    elif sim.parallel_tools and not choice.get("disable_parallel_tool_use"):
        chosen = tools
    else:
        chosen = tools[:1]
    calls = []
    for tool in chosen:
        value = example_from_schema(tool["input_schema"])
        calls.append(ToolCall(new_id("toolu_01"), tool.get("name", ""), value, _json_text(value)))
    return calls, forced


def _earliest_stop(text: str, stop_sequences: object) -> tuple[int, str] | None:
    if not text or not isinstance(stop_sequences, list):
        return None
    hits = [(text.find(s), s) for s in stop_sequences if isinstance(s, str) and s and s in text]
    return min(hits) if hits else None


def _think(reply: Reply, request: Request, sim: Sim, max_tokens: int) -> int:
    """The thinking blocks that open the answer; returns the output tokens they use."""
    thinking = request.thinking
    if thinking is None:
        if sim.redacted_thinking:
            raise bad("x-sim: redacted_thinking needs thinking enabled in the request")
        return 0
    words = sim.thinking_words or THINKING_WORDS[thinking.effort or "high"]
    words = min(words, thinking.budget_tokens or max_tokens)
    text = _thinking_text(request.scan.last_user_text, words)
    reply.thinking = "" if thinking.display == "omitted" else text
    reply.signature = sign_thinking(reply.thinking)
    if not sim.redacted_thinking:
        return words
    reply.redacted = redacted_data()
    return min(words + REDACTED_THINKING_TOKENS, max_tokens)


def build_reply(request: Request, sim: Sim) -> Reply:
    """Thinking (when on), then text and/or tool calls, cut to max_tokens and stop_sequences."""
    req, max_tokens = request.body, request.max_tokens
    if max_tokens is None:
        raise ValueError("a count_tokens request gets no reply")
    tools, forced = _tool_calls(req, sim)
    if tools:
        text = "" if forced else _TOOL_PREAMBLE
    else:
        text = _reply_text(req, sim, request.scan.last_user_text)
    reply = Reply(text, tools, "tool_use" if tools else "end_turn")
    thinking_tokens = _think(reply, request, sim, max_tokens)
    stop = _earliest_stop(text, req.get("stop_sequences"))
    if stop is not None:
        reply.text, reply.stop_sequence = text[: stop[0]], stop[1]
        reply.tools, reply.stop_reason = [], "stop_sequence"
    words = reply.text.split(" ") if reply.text else []
    room = max_tokens - thinking_tokens
    if len(words) > room:
        words = words[: max(room, 0)]
        reply.text, reply.tools = " ".join(words), []
        reply.stop_reason, reply.stop_sequence = "max_tokens", None
    elif len(words) + sum(t.tokens for t in reply.tools) > room:
        reply.tools, reply.stop_reason = [], "max_tokens"
    if sim.stop:
        reply.stop_reason = sim.stop
        reply.stop_sequence = _forced_stop_sequence(req) if sim.stop == "stop_sequence" else None
    reply.output_tokens = max(1, thinking_tokens + len(words) + sum(t.tokens for t in reply.tools))
    return reply


def _forced_stop_sequence(req: dict) -> str:
    sequences = [s for s in req.get("stop_sequences") or () if isinstance(s, str) and s]
    return sequences[0] if sequences else _DEFAULT_STOP_SEQUENCE


def usage(input_tokens: int, cache: CacheUsage, sim: Sim, output_tokens: int) -> dict:
    """``input_tokens`` is the uncached remainder of the prompt; the ``cache_*`` markers add
    to what the prompt cache reports without changing it."""
    write_5m = cache.write_5m + sim.cache_write_5m
    write_1h = cache.write_1h + sim.cache_write_1h
    return {
        "input_tokens": input_tokens - cache.read - cache.write_5m - cache.write_1h,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": cache.read + sim.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message(model: str, content: list, stop_reason: str | None, stop_sequence: str | None, usage: dict) -> dict:
    return {
        "id": new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def content(reply: Reply) -> list[dict]:
    blocks: list[dict] = []
    if reply.thinking is not None:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": reply.signature})
    if reply.redacted is not None:
        blocks.append({"type": "redacted_thinking", "data": reply.redacted})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks.extend({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input} for t in reply.tools)
    return blocks
