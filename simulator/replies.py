"""The deterministic answer to a request: text, tool calls, stop reason and usage."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import cycle, islice

from .errors import bad
from .options import MARKER, Sim
from .schema import example_from_schema

TOOL_CALL_OVERHEAD_TOKENS = 10
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


def new_id(prefix: str) -> str:
    return prefix + os.urandom(11).hex()


@lru_cache(maxsize=64)
def _filler(words: int) -> str:
    return " ".join(islice(cycle(_FILLER_WORDS), words))


def _default_text(last_user_text: str) -> str:
    words = MARKER.sub(" ", last_user_text).split()[:6]
    snippet = " ".join(words).rstrip(".!?,;:") or "your message"
    return f"Simulated reply to: {snippet}. This is a deterministic answer."


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


def build_reply(req: dict, sim: Sim, last_user_text: str) -> Reply:
    tools, forced = _tool_calls(req, sim)
    if tools:
        text = "" if forced else _TOOL_PREAMBLE
    else:
        text = _reply_text(req, sim, last_user_text)
    reply = Reply(text, tools, "tool_use" if tools else "end_turn")
    stop = _earliest_stop(text, req.get("stop_sequences"))
    if stop is not None:
        reply.text, reply.stop_sequence = text[: stop[0]], stop[1]
        reply.tools, reply.stop_reason = [], "stop_sequence"
    words = reply.text.split(" ") if reply.text else []
    max_tokens = req["max_tokens"]
    if len(words) > max_tokens:
        words = words[:max_tokens]
        reply.text, reply.tools = " ".join(words), []
        reply.stop_reason, reply.stop_sequence = "max_tokens", None
    elif len(words) + sum(t.tokens for t in reply.tools) > max_tokens:
        reply.tools, reply.stop_reason = [], "max_tokens"
    if sim.stop:
        reply.stop_reason = sim.stop
        reply.stop_sequence = _forced_stop_sequence(req) if sim.stop == "stop_sequence" else None
    reply.output_tokens = max(1, len(words) + sum(t.tokens for t in reply.tools))
    return reply


def _forced_stop_sequence(req: dict) -> str:
    sequences = [s for s in req.get("stop_sequences") or () if isinstance(s, str) and s]
    return sequences[0] if sequences else _DEFAULT_STOP_SEQUENCE


def usage(input_tokens: int, sim: Sim, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": sim.cache_write_5m + sim.cache_write_1h,
        "cache_read_input_tokens": sim.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": sim.cache_write_5m,
            "ephemeral_1h_input_tokens": sim.cache_write_1h,
        },
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
    content: list[dict] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input} for t in reply.tools)
    return content
