"""A fast, deterministic fake of Anthropic's ``POST /v1/messages`` (plain and SSE).

A raw ASGI application (no framework), byte-compatible with the real wire format
(see /work/shared/fixtures/anthropic/) so the official ``anthropic`` SDK parses it. Used
by the test suite, by ``make run`` without an API key and by the latency benchmark.

Start it::

    python -m simulator --host 127.0.0.1 --port 8081
    # or, from Python: simulator.serve("127.0.0.1", 8081)

Routes: ``POST /v1/messages``; ``GET /healthz`` -> 200 ``ok``; anything else -> 404 in
Anthropic's error shape. Every response carries ``request-id: req_...``.

Validation (400 ``invalid_request_error`` naming the field, like the real API):
missing ``x-api-key`` -> 401; invalid JSON; ``model`` / ``max_tokens`` (int >= 1) /
``messages`` (non-empty list) missing or mistyped; ``temperature`` outside 0..1; empty
text blocks; image ``media_type`` other than jpeg/png/gif/webp. Bodies over 32 MiB -> 413.
Models listed in ``RETIRED_MODELS`` (env ``SIM_RETIRED_MODELS``, comma list) -> 404
``not_found_error`` "model: <id>". ``anthropic-version`` is accepted but not required.

Default behaviour:

- Reply: "Simulated reply to: <first words of the last user message>. This is a
  deterministic answer." (about a dozen words).
- ``input_tokens`` = ceil(UTF-8 bytes of all text in system + messages + tool
  definitions / 4) + 8, plus 1600 per image.
- ``output_tokens`` = words emitted (a "word" is a space-separated piece and is streamed
  as one ``text_delta``) + ceil(len(input JSON) / 4) + 10 per tool call; never 0.
- ``max_tokens`` is honoured (reply cut to that many words, ``stop_reason: max_tokens``,
  tool calls that do not fit are dropped); so is ``stop_sequences`` (text cut before the
  earliest match, ``stop_reason: stop_sequence``, ``stop_sequence`` set).
- ``tool_choice`` ``{"type": "any"}`` / ``{"type": "tool", "name": X}`` always answers
  with a tool call (no text before it); ``{"type": "none"}`` never does.
- Structured output (``output_config.format`` or legacy top-level ``output_format`` of
  type ``json_schema``): the reply text is a JSON document generated from the schema.
- Tool inputs and structured outputs come from a small schema generator: strings "x"
  ("Paris" for city/location keys), integers 1 (or ``minimum``), numbers 1.5, booleans
  true, arrays ``minItems`` items, enum/const -> first value, local ``$ref`` resolved,
  every declared object property included.

Markers select behaviour per request, either in the LAST user message text as
``[[sim:KEY=VALUE,KEY2]]`` or in the request header ``x-sim: KEY=VALUE,KEY2`` (the
marker wins on conflicts; unknown keys or bad values -> 400):

=======================  ==============================================================
``words=N``              reply of exactly N words (long streams, benchmarks)
``reply=json``           reply text is the JSON object ``{"answer": 42}``
``tool``                 with ``tools``: "Let me check." then one tool_use for the first
                         tool (or the ``tool_choice`` one); ``stop_reason: tool_use``
``parallel_tools``       one tool_use per defined tool, unless
                         ``tool_choice.disable_parallel_tool_use`` is true
``error=CODE``           answer with that HTTP error: 400 401 402 403 404 409 413 429 500
                         504 529 (404 says "model: <model>"; 429/529 add ``retry-after: 1``)
``fail_first=N``         only the first N attempts of this identical request (same body and
                         ``x-sim`` header) apply ``error`` / ``midstream_error`` / ``drop``
                         (``error`` defaults to 529 when none is given); later ones succeed
``midstream_error``      streaming: after 2 content deltas send an ``error`` event
                         (overloaded_error) and end without ``message_stop``; plain: 529
``drop``                 streaming: end the response after 2 content deltas, without
                         ``message_stop`` (plain requests ignore it)
``delay_ms=N``           sleep N ms before the response headers
``chunk_delay_ms=N``     sleep N ms between streamed events
``cache_read=N``         ``usage.cache_read_input_tokens`` = N
``cache_write_5m=N``     5-minute cache writes (added to ``cache_creation_input_tokens``)
``cache_write_1h=N``     1-hour cache writes (added to ``cache_creation_input_tokens``)
``stop=REASON``          force ``stop_reason``: end_turn, max_tokens, stop_sequence,
                         pause_turn or refusal (content unchanged)
=======================  ==============================================================

Streams follow the real event order: message_start (input usage, ``output_tokens: 1``),
per block content_block_start / deltas / content_block_stop with a ``ping`` after the
first content_block_start, message_delta (stop_reason, cumulative ``output_tokens``),
message_stop. Each event is sent as its own ASGI body message.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import cycle, islice

import orjson

MAX_BODY_BYTES = 32 * 1024 * 1024
IMAGE_TOKENS = 1600
BASE_INPUT_TOKENS = 8
TOOL_CALL_OVERHEAD_TOKENS = 10
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
RETIRED_MODELS: set[str] = {
    model.strip() for model in os.environ.get("SIM_RETIRED_MODELS", "").split(",") if model.strip()
}

# status -> (error.type, message); 404 is "model: <model>" (see _error_for_status).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Simulated invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: "),
    409: ("conflict_error", "Simulated conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Simulated rate limit: this request would exceed your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
RETRY_AFTER_STATUSES = frozenset({429, 529})
STOP_REASONS = frozenset({"end_turn", "max_tokens", "stop_sequence", "pause_turn", "refusal"})

_MARKER = re.compile(r"\[\[sim:([^\]]*)\]\]")
_JSON_REPLY = '{"answer": 42}'
_TOOL_PREAMBLE = "Let me check."
_FILLER_WORDS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "the", "simulator",
                 "streams", "tokens"]
_DEFAULT_STOP_SEQUENCE = "\n\nHuman:"
_JSON_CHUNK_CHARS = 12
_MAX_SCHEMA_DEPTH = 16
_MAX_TRACKED_ATTEMPTS = 10_000
_attempts: dict[int, int] = {}  # fail_first counters, keyed by hash(body, x-sim)

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_DELTA_PREFIX = b"event: content_block_delta\n"
_MESSAGE_DELTA_PREFIX = b"event: message_delta\n"
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


class SimError(Exception):
    """An Anthropic-shaped error response, raised before any byte is sent."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def _error_for_status(status: int, model: str) -> SimError:
    error_type, message = ERRORS[status]
    return SimError(status, message + model if status == 404 else message, error_type)


# --------------------------------------------------------------------------- options


def _flag(value: str) -> bool:
    if value not in ("", "1", "true"):
        raise ValueError(value)
    return True


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _status(value: str) -> int:
    status = int(value)
    if status not in ERRORS:
        raise ValueError(value)
    return status


def _one_of(allowed: frozenset[str]):
    def parse(value: str) -> str:
        if value not in allowed:
            raise ValueError(value)
        return value

    return parse


_OPTION_PARSERS = {
    "words": _positive,
    "reply": _one_of(frozenset({"json"})),
    "tool": _flag,
    "parallel_tools": _flag,
    "error": _status,
    "fail_first": _count,
    "midstream_error": _flag,
    "drop": _flag,
    "delay_ms": _count,
    "chunk_delay_ms": _count,
    "cache_read": _count,
    "cache_write_5m": _count,
    "cache_write_1h": _count,
    "stop": _one_of(STOP_REASONS),
}


@dataclass(slots=True)
class Sim:
    """Behaviour options of one request (see the module docstring)."""

    words: int | None = None
    reply: str | None = None
    tool: bool = False
    parallel_tools: bool = False
    error: int | None = None
    fail_first: int | None = None
    midstream_error: bool = False
    drop: bool = False
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    stop: str | None = None

    def apply(self, spec: str) -> None:
        for item in spec.split(","):
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not key:
                continue
            parse = _OPTION_PARSERS.get(key)
            if parse is None:
                raise SimError(400, f"x-sim: unknown option {key!r}")
            try:
                setattr(self, key, parse(value))
            except ValueError:
                raise SimError(400, f"x-sim: bad value {value!r} for {key!r}") from None


def _options(header: bytes | None, last_user_text: str) -> Sim:
    sim = Sim()
    if header:
        sim.apply(header.decode("latin-1"))
    if "[[sim:" in last_user_text:
        for match in _MARKER.finditer(last_user_text):
            sim.apply(match.group(1))
    return sim


def _arm_failures(sim: Sim, key: int) -> None:
    """fail_first: the failure options apply to the first N attempts of an identical request only."""
    if sim.fail_first is None:
        return
    if key not in _attempts and len(_attempts) >= _MAX_TRACKED_ATTEMPTS:
        del _attempts[next(iter(_attempts))]
    attempt = _attempts.get(key, 0) + 1
    _attempts[key] = attempt
    if attempt > sim.fail_first:
        sim.error, sim.midstream_error, sim.drop = None, False, False
    elif not (sim.error or sim.midstream_error or sim.drop):
        sim.error = 529


# --------------------------------------------------------------------------- request


def _bad(message: str) -> SimError:
    return SimError(400, message)


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


@dataclass(slots=True)
class Scan:
    """What one validating pass over the request learns: token inputs and the last user text."""

    text_bytes: int = 0
    images: int = 0
    last_user_text: str = ""

    def block(self, block: object, where: str) -> str:
        """Validate and count one content block; return its text (for the last user text)."""
        if not isinstance(block, dict):
            raise _bad(f"{where}: Input should be a valid dictionary")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str) or not text:
                raise _bad("messages: text content blocks must be non-empty")
            self.text_bytes += _utf8_len(text)
            return text
        if kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64" and source.get("media_type") not in IMAGE_MEDIA_TYPES:
                raise _bad(
                    f"{where}.image.source.base64.media_type: Input should be "
                    "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
                )
            self.images += 1
        elif kind == "tool_use":
            self.text_bytes += len(orjson.dumps(block.get("input")))
        elif kind == "tool_result":
            return self.tool_result(block.get("content"), where)
        elif kind == "thinking":
            self.text_bytes += _utf8_len(block.get("thinking") or "")
        elif kind == "document" and (block.get("source") or {}).get("type") == "text":
            self.text_bytes += _utf8_len(block["source"].get("data") or "")
        return ""

    def tool_result(self, content: object, where: str) -> str:
        if isinstance(content, str):
            self.text_bytes += _utf8_len(content)
            return content
        if isinstance(content, list):
            return " ".join(self.block(b, f"{where}.content.{j}") for j, b in enumerate(content))
        return ""

    def message(self, message: object, index: int, is_last: bool) -> None:
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise _bad(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _bad(f"{where}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if isinstance(content, str):
            self.text_bytes += _utf8_len(content)
            text = content
        elif isinstance(content, list):
            text = " ".join(self.block(b, f"{where}.content.{j}") for j, b in enumerate(content))
        else:
            raise _bad(f"{where}.content: " + ("Field required" if content is None else "Input should be a valid list"))
        if not content and not (is_last and role == "assistant"):
            raise _bad(
                f"{where}: all messages must have non-empty content except for the optional final assistant message"
            )
        if role == "user":
            self.last_user_text = text

    def system(self, system: object) -> None:
        if isinstance(system, str):
            self.text_bytes += _utf8_len(system)
        elif isinstance(system, list):
            for j, block in enumerate(system):
                self.block(block, f"system.{j}")
        elif system is not None:
            raise _bad("system: Input should be a valid string or list")

    @property
    def input_tokens(self) -> int:
        return -(-self.text_bytes // 4) + BASE_INPUT_TOKENS + IMAGE_TOKENS * self.images


def _validate(req: object) -> Scan:
    if not isinstance(req, dict):
        raise _bad("Input should be a valid dictionary")
    model = req.get("model")
    if model is None:
        raise _bad("model: Field required")
    if not isinstance(model, str):
        raise _bad("model: Input should be a valid string")
    max_tokens = req.get("max_tokens")
    if max_tokens is None:
        raise _bad("max_tokens: Field required")
    if type(max_tokens) is not int:
        raise _bad("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        raise _bad("max_tokens: Input should be greater than or equal to 1")
    messages = req.get("messages")
    if messages is None:
        raise _bad("messages: Field required")
    if not isinstance(messages, list):
        raise _bad("messages: Input should be a valid list")
    if not messages:
        raise _bad("messages: at least one message is required")
    temperature = req.get("temperature")
    if temperature is not None:
        if type(temperature) not in (int, float):
            raise _bad("temperature: Input should be a valid number")
        if temperature > 1:
            raise _bad("temperature: Input should be less than or equal to 1")
        if temperature < 0:
            raise _bad("temperature: Input should be greater than or equal to 0")
    tools = req.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("tools: Input should be a valid list")
    scan = Scan()
    scan.system(req.get("system"))
    last = len(messages) - 1
    for index, message in enumerate(messages):
        scan.message(message, index, index == last)
    if tools:
        scan.text_bytes += len(orjson.dumps(tools))
    return scan


# --------------------------------------------------------------------------- schema examples


def _resolve(ref: str, root: dict) -> object:
    node: object = root
    for part in ref.lstrip("#").strip("/").split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def example_from_schema(schema: object, root: dict | None = None, key: str = "", depth: int = 0) -> object:
    """A small value that satisfies a JSON schema (the generator for tool inputs and structured output)."""
    if not isinstance(schema, dict) or depth > _MAX_SCHEMA_DEPTH:
        return "x"
    root = schema if root is None else root
    if isinstance(schema.get("$ref"), str):
        return example_from_schema(_resolve(schema["$ref"], root), root, key, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return example_from_schema(schema[combinator][0], root, key, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: example_from_schema(sub, root, name, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        item = schema.get("items")
        return [example_from_schema(item, root, key, depth + 1) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    word = "Paris" if "city" in key.lower() or "location" in key.lower() else "x"
    return word.ljust(schema.get("minLength", 0), "x")


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- reply


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


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(11).hex()


@lru_cache(maxsize=64)
def _filler(words: int) -> str:
    return " ".join(islice(cycle(_FILLER_WORDS), words))


def _default_text(last_user_text: str) -> str:
    words = _MARKER.sub(" ", last_user_text).split()[:6]
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
            raise _bad(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")
    elif sim.parallel_tools and not choice.get("disable_parallel_tool_use"):
        chosen = tools
    else:
        chosen = tools[:1]
    calls = []
    for tool in chosen:
        value = example_from_schema(tool["input_schema"])
        calls.append(ToolCall(_new_id("toolu_01"), tool.get("name", ""), value, _json_text(value)))
    return calls, forced


def _earliest_stop(text: str, stop_sequences: object) -> tuple[int, str] | None:
    if not text or not isinstance(stop_sequences, list):
        return None
    hits = [(text.find(s), s) for s in stop_sequences if isinstance(s, str) and s and s in text]
    return min(hits) if hits else None


def _build_reply(req: dict, sim: Sim, last_user_text: str) -> Reply:
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


def _usage(input_tokens: int, sim: Sim, output_tokens: int) -> dict:
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


def _message(model: str, content: list, stop_reason: str | None, stop_sequence: str | None, usage: dict) -> dict:
    return {
        "id": _new_id("msg_01"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def _content(reply: Reply) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": reply.text}] if reply.text else []
    content.extend({"type": "tool_use", "id": t.id, "name": t.name, "input": t.input} for t in reply.tools)
    return content


# --------------------------------------------------------------------------- SSE


def _event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _delta_head(index: int, delta_type: bytes, field_name: bytes) -> bytes:
    return (
        _DELTA_PREFIX
        + b'data: {"type":"content_block_delta","index":'
        + str(index).encode()
        + b',"delta":{"type":"' + delta_type + b'","' + field_name + b'":'
    )


def _block_events(index: int, start_block: dict, delta_type: bytes, field_name: bytes, pieces) -> list[bytes]:
    head = _delta_head(index, delta_type, field_name)
    start = {"type": "content_block_start", "index": index, "content_block": start_block}
    events = [_event("content_block_start", start)]
    events.extend(head + orjson.dumps(piece) + b"}}\n\n" for piece in pieces)
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _text_pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def _json_pieces(text: str) -> list[str]:
    return ["", *(text[i : i + _JSON_CHUNK_CHARS] for i in range(0, len(text), _JSON_CHUNK_CHARS))]


def _stream_events(model: str, reply: Reply, usage: dict) -> list[bytes]:
    """All events of a stream, in order, each ready to send."""
    start_usage = {**usage, "output_tokens": 1}
    start = _message(model, [], None, None, start_usage)
    events = [_event("message_start", {"type": "message_start", "message": start})]
    blocks = []
    if reply.text:
        blocks.append(({"type": "text", "text": ""}, b"text_delta", b"text", _text_pieces(reply.text)))
    for tool in reply.tools:
        start_block = {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}
        blocks.append((start_block, b"input_json_delta", b"partial_json", _json_pieces(tool.input_json)))
    for index, (start_block, delta_type, field_name, pieces) in enumerate(blocks):
        block = _block_events(index, start_block, delta_type, field_name, pieces)
        events.extend(block if index else [block[0], _PING, *block[1:]])
    if not blocks:
        events.append(_PING)
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    events.append(_MESSAGE_STOP)
    return events


# --------------------------------------------------------------------------- ASGI


async def _respond(send, status: int, body: bytes, headers: list, request_id: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"request-id", request_id), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _respond_error(send, error: SimError, request_id: bytes) -> None:
    body = orjson.dumps(
        {
            "type": "error",
            "error": {"type": error.error_type, "message": error.message},
            "request_id": request_id.decode(),
        }
    )
    headers = _JSON_HEADERS
    if error.status in RETRY_AFTER_STATUSES:
        headers = [*headers, (b"retry-after", b"1")]
    await _respond(send, error.status, body, headers, request_id)


async def _stream(send, events: list[bytes], sim: Sim, request_id: bytes) -> None:
    """Send each event as its own body message. midstream_error/drop end the stream after
    the second content delta (or before message_delta if there are fewer deltas)."""
    await send({"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, (b"request-id", request_id)]})
    interrupt = sim.midstream_error or sim.drop
    delay = sim.chunk_delay_ms / 1000
    deltas = 0
    for position, chunk in enumerate(events):
        if interrupt and (deltas == 2 or chunk.startswith(_MESSAGE_DELTA_PREFIX)):
            if sim.midstream_error:
                await send({"type": "http.response.body", "body": _OVERLOADED_EVENT, "more_body": True})
            break
        if delay and position:
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        deltas += chunk.startswith(_DELTA_PREFIX)
    await send({"type": "http.response.body", "body": b""})


async def _read_body(receive, headers: dict) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and int(declared) > MAX_BODY_BYTES:
        raise _error_for_status(413, "")
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _error_for_status(413, "")
        chunks.append(chunk)
    return b"".join(chunks)


async def _messages(scope, receive, send, request_id: bytes) -> None:
    headers = dict(scope["headers"])
    if b"x-api-key" not in headers:
        raise SimError(401, "x-api-key header is required", "authentication_error")
    body = await _read_body(receive, headers)
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad("The request body is not valid JSON.") from None
    scan = _validate(req)
    model = req["model"]
    sim_header = headers.get(b"x-sim")
    sim = _options(sim_header, scan.last_user_text)
    if sim.delay_ms:
        await asyncio.sleep(sim.delay_ms / 1000)
    if model in RETIRED_MODELS:
        raise _error_for_status(404, model)
    _arm_failures(sim, hash((body, sim_header)))
    streaming = req.get("stream") is True
    if sim.error:
        raise _error_for_status(sim.error, model)
    if sim.midstream_error and not streaming:
        raise _error_for_status(529, model)
    reply = _build_reply(req, sim, scan.last_user_text)
    usage = _usage(scan.input_tokens, sim, reply.output_tokens)
    if streaming:
        await _stream(send, _stream_events(model, reply, usage), sim, request_id)
    else:
        message = _message(model, _content(reply), reply.stop_reason, reply.stop_sequence, usage)
        await _respond(send, 200, orjson.dumps(message), _JSON_HEADERS, request_id)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    request_id = b"req_011C" + os.urandom(10).hex().encode()
    path, method = scope["path"], scope["method"]
    try:
        if path == "/v1/messages" and method == "POST":
            await _messages(scope, receive, send, request_id)
        elif path == "/healthz" and method in ("GET", "HEAD"):
            await _respond(send, 200, b"ok", [(b"content-type", b"text/plain")], request_id)
        else:
            raise SimError(404, "Not Found", "not_found_error")
    except SimError as error:
        await _respond_error(send, error, request_id)


# --------------------------------------------------------------------------- CLI


def serve(host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve the simulator with uvicorn (uvloop + httptools) until interrupted."""
    import uvicorn

    print(f"Anthropic simulator listening on http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Fake Anthropic Messages API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
