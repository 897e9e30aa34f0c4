"""Anthropic SSE events → OpenAI ``chat.completion.chunk`` SSE bytes, one event at a time.

The caller reads upstream events and forwards whatever ``feed`` returns at once (no
buffering). Output follows wire-format §3: bare ``data:`` lines only (no ``event:`` or
``id:`` lines, which break older SDKs), the role once in the first chunk, tool-call
fragments keyed by a running OpenAI tool index (not Anthropic's block index), a final chunk
with ``finish_reason``, the ``include_usage`` chunk last, then ``data: [DONE]``.

Thinking streams as ``delta.reasoning_content`` text plus ``delta.reasoning_details``
fragments keyed by a running reasoning index: ``type`` and ``index`` on every fragment, and
``format`` only on a block's first one, so the official SDKs' accumulator (which
concatenates string fields of entries with the same index) rebuilds exactly the
``reasoning_details`` a plain response carries; the signature arrives as its own fragment.
Redacted thinking is one ``reasoning.encrypted`` fragment. Nothing of it with
``reasoning.exclude``.

This is the hot path: every chunk is a pre-built byte prefix + one small ``orjson`` dump +
a pre-built suffix.
"""
from __future__ import annotations

from collections.abc import Callable

import orjson

from proxy.errors import GatewayError

from .errors import anthropic_stream_error
from .reasoning import FORMAT
from .request import Translated
from .response import map_finish_reason
from .usage import StreamMeter, Usage, openai_usage

DONE = b"data: [DONE]\n\n"
_ROLE_DELTA = b'{"role":"assistant","content":""}'
_EMPTY_ARGUMENTS = "{}"


def sse_error(err: GatewayError) -> bytes:
    """An OpenAI-shaped error event; every SDK version raises ``APIError`` on it (§3.4)."""
    return b"data: " + err.json_bytes() + b"\n\n"


class StreamTranslator:
    """Translates one upstream stream into chat.completion chunks. What the stream used and
    how it ended is kept by its ``meter`` (a StreamMeter, read by the call pipeline); the
    properties below read it for callers that only hold the translator."""

    __slots__ = (
        "meter", "finish_reason", "_t", "_cost_of", "_json_tool", "_base", "_head", "_tail", "_usage_null",
        "_tool_index", "_json_block", "_empty_blocks", "_show_reasoning", "_reasoning_index", "_reasoning_open",
    )

    def __init__(self, t: Translated, completion_id: str, created: int,
                 cost_of: Callable[[Usage], str | None] | None = None) -> None:
        self.meter = StreamMeter(t.max_tokens)
        self.finish_reason: str | None = None
        self._t = t
        self._cost_of = cost_of  # adds the billed amount to the include_usage chunk
        self._json_tool = t.json_tool
        # Constant parts of every chunk, built once per stream.
        self._base = (b'data: {"id":' + orjson.dumps(completion_id)
                      + b',"object":"chat.completion.chunk","created":' + orjson.dumps(created)
                      + b',"model":' + orjson.dumps(t.requested_model) + b",")
        self._head = self._base + b'"choices":[{"index":0,"delta":'
        self._usage_null = b',"usage":null' if t.include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"
        # Block indexes are upstream's JSON: an int, or None when missing.
        self._tool_index: dict[int | None, int] = {}  # Anthropic block index → OpenAI tool_calls index
        self._json_block: int | None = None  # block index of the forced JSON tool
        self._empty_blocks: set[int | None] = set()  # tool blocks whose arguments are still empty
        self._show_reasoning = not t.exclude_reasoning
        self._reasoning_index: dict[int | None, int] = {}  # Anthropic block index → reasoning_details index
        self._reasoning_open: set[int] = set()  # reasoning indexes whose first fragment went out

    @property
    def usage(self) -> Usage:
        return self.meter.usage

    @property
    def usage_final(self) -> bool:
        return self.meter.usage_final

    @property
    def done(self) -> bool:
        return self.meter.done

    @property
    def failed(self) -> bool:
        return self.meter.failed

    @property
    def error_type(self) -> str | None:
        return self.meter.error_type

    @property
    def upstream_message_id(self) -> str | None:
        return self.meter.upstream_message_id

    @property
    def upstream_model(self) -> str | None:
        return self.meter.upstream_model

    @property
    def delivered_output_chars(self) -> int:
        return self.meter.delivered_chars

    def estimated_output_tokens(self) -> int:
        return self.meter.estimated_output_tokens()

    def feed(self, event: str, data: dict, raw: bytes = b"") -> bytes:
        """Bytes to send the client for one upstream event (often ``b""``); ``raw`` (the
        event's own bytes) is not needed here."""
        meter = self.meter
        if meter.done or meter.failed:
            return b""
        meter.observe(event, data)
        if event == "content_block_delta":
            return self._on_block_delta(data)
        if event == "content_block_start":
            return self._on_block_start(data)
        if event == "content_block_stop":
            return self._on_block_stop(data)
        if event == "message_start":
            return self._chunk(_ROLE_DELTA)
        if event == "message_delta":
            if meter.stop_reason:
                self.finish_reason = map_finish_reason(meter.stop_reason, self._t)
            return b""
        if event == "message_stop":
            return self._on_message_stop()
        if event == "error":
            return sse_error(anthropic_stream_error(data))
        return b""  # ping, and event types added after this was written

    # --- event handlers -----------------------------------------------------------------

    def _on_block_delta(self, data: dict) -> bytes:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if not text or self._json_tool is not None:
                return b""
            self._count(text)
            return self._content(text)
        if kind == "thinking_delta" or kind == "signature_delta":
            return self._on_thinking_delta(data.get("index"), delta, kind)
        if kind != "input_json_delta":
            return b""  # citation deltas are not forwarded
        fragment = delta.get("partial_json")
        if not fragment:
            return b""
        index = data.get("index")
        tool = self._tool_index.get(index)
        if tool is None and (index is None or index != self._json_block):
            return b""  # a block we do not forward (e.g. a server tool)
        self._count(fragment)
        self._empty_blocks.discard(index)
        if tool is None:
            return self._content(fragment)
        return self._arguments(tool, fragment)

    def _on_block_start(self, data: dict) -> bytes:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not text or self._json_tool is not None:
                return b""
            self._count(text)
            return self._content(text)
        if kind == "thinking" or kind == "redacted_thinking":
            return self._on_thinking_start(data.get("index"), block, kind)
        if kind != "tool_use":
            return b""
        index = data.get("index")
        self._empty_blocks.add(index)
        if self._json_tool is not None and block.get("name") == self._json_tool:
            self._json_block = index
            return b""
        tool = self._tool_index[index] = len(self._tool_index)
        delta = {"tool_calls": [{"index": tool, "id": block.get("id"), "type": "function",
                                 "function": {"name": block.get("name"), "arguments": ""}}]}
        return self._chunk(orjson.dumps(delta))

    def _on_thinking_start(self, index: int | None, block: dict, kind: str) -> bytes:
        if not self._show_reasoning:
            return b""
        reasoning = self._reasoning_index[index] = len(self._reasoning_index)
        if kind == "redacted_thinking":
            self._count("")  # output the client received, though no text
            return self._reasoning({"type": "reasoning.encrypted", "data": block.get("data"), "index": reasoning},
                                   reasoning)
        text = block.get("thinking")
        if not text:
            return b""
        return self._thinking_text(text, reasoning)

    def _on_thinking_delta(self, index: int | None, delta: dict, kind: str) -> bytes:
        reasoning = self._reasoning_index.get(index)
        if reasoning is None:
            return b""  # excluded, or a block we were never told about
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return self._thinking_text(text, reasoning) if text else b""
        signature = delta.get("signature")
        if not signature:
            return b""
        return self._reasoning({"type": "reasoning.text", "signature": signature, "index": reasoning}, reasoning)

    def _thinking_text(self, text: str, reasoning: int) -> bytes:
        self._count(text)
        return self._reasoning({"type": "reasoning.text", "text": text, "index": reasoning}, reasoning, text)

    def _reasoning(self, detail: dict, reasoning: int, text: str | None = None) -> bytes:
        """One reasoning fragment; a block's first one also carries ``format`` (and ``text``)."""
        if reasoning not in self._reasoning_open:
            self._reasoning_open.add(reasoning)
            detail["format"] = FORMAT
            if detail["type"] == "reasoning.text":
                detail.setdefault("text", "")
        delta: dict = {"reasoning_details": [detail]}
        if text is not None:
            delta = {"reasoning_content": text, **delta}
        return self._chunk(orjson.dumps(delta))

    def _on_block_stop(self, data: dict) -> bytes:
        """A tool whose argument fragments were all empty has empty input: send ``{}``."""
        index = data.get("index")
        if index not in self._empty_blocks:
            return b""
        self._empty_blocks.discard(index)
        if index == self._json_block:
            return self._content(_EMPTY_ARGUMENTS)
        return self._arguments(self._tool_index[index], _EMPTY_ARGUMENTS)

    def _on_message_stop(self) -> bytes:
        self.finish_reason = self.finish_reason or "stop"
        parts = [self._head, b'{},"logprobs":null,"finish_reason":', orjson.dumps(self.finish_reason),
                 b"}]", self._usage_null, b"}\n\n"]
        if self._t.include_usage:
            usage = openai_usage(self.usage)
            if self._cost_of is not None:
                usage["cost"] = self._cost_of(self.usage)
            parts += [self._base, b'"choices":[],"usage":', orjson.dumps(usage), b"}\n\n"]
        parts.append(DONE)
        return b"".join(parts)

    def _count(self, text: str) -> None:
        self.meter.delivered(text)

    def _chunk(self, delta: bytes) -> bytes:
        return b"".join((self._head, delta, self._tail))

    def _content(self, text: str) -> bytes:
        return b"".join((self._head, b'{"content":', orjson.dumps(text), b"}", self._tail))

    def _arguments(self, tool: int, fragment: str) -> bytes:
        return b"".join((self._head, b'{"tool_calls":[{"index":', b"%d" % tool,
                         b',"function":{"arguments":', orjson.dumps(fragment), b"}}]}", self._tail))
