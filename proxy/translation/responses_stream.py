"""Anthropic SSE events → Responses API SSE events, one upstream event at a time.

OpenAI's order (what ``client.responses.stream()`` enforces): ``response.created`` and
``response.in_progress`` first; per output item ``response.output_item.added``, its
parts and deltas, their ``.done`` events, then ``response.output_item.done``; exactly one
terminal event last (``response.completed``, ``response.incomplete`` or
``response.failed``) carrying the full response. Every event has ``event:`` and ``data:``
lines and a ``sequence_number`` growing from 0; every lifecycle event carries the same
response id.

Mapping: thinking blocks → a reasoning item (summary deltas when ``reasoning.summary``
was asked for); consecutive text blocks → one message item with one ``output_text`` part
(closed when another kind of block starts, or at the end); ``tool_use`` → a
``function_call`` item whose argument fragments stream as they come, or a
``custom_tool_call`` whose string is sent when its block ends (upstream streams it
JSON-encoded). Text deltas are the hot path: a pre-built prefix per item, one
``orjson`` dump of the delta.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from proxy.errors import GatewayError

from .errors import anthropic_stream_error
from .response import map_finish_reason
from .responses_output import (
    call_item,
    client_view,
    item_id,
    message_item,
    reasoning_item,
    response_object,
    status_of,
    thinking_tokens,
    usage_object,
)
from .responses_request import ResponsesRequest
from .usage import StreamMeter, Usage

_TEXT, _REASONING, _CALL = "text", "reasoning", "call"


def sse_event(kind: str, payload: dict) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"


_MESSAGE_ADDED = (b'event: response.output_item.added\ndata: {"type":"response.output_item.added","sequence_number":%d,'
                  b'"output_index":%d,"item":{"id":"%b","type":"message","status":"in_progress","role":"assistant",'
                  b'"content":[]}}\n\n')
_PART_ADDED = (b'event: response.content_part.added\ndata: {"type":"response.content_part.added","sequence_number":%d,'
               b'%b,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}\n\n')
_TEXT_DONE = (b'event: response.output_text.done\ndata: {"type":"response.output_text.done","sequence_number":%d,'
              b'%b,"text":%b,"logprobs":[]}\n\n')
_PART_DONE = (b'event: response.content_part.done\ndata: {"type":"response.content_part.done","sequence_number":%d,'
              b'%b,"part":%b}\n\n')
_ITEM_DONE = (b'event: response.output_item.done\ndata: {"type":"response.output_item.done","sequence_number":%d,'
              b'"output_index":%d,"item":{"id":"%b","type":"message","status":"%b","role":"assistant",'
              b'"content":[%b]}}\n\n')


class _Item:
    """An output item while it streams."""

    __slots__ = ("kind", "index", "id", "parts", "blocks", "name", "call_id", "custom", "summary_open", "prefix")

    def __init__(self, kind: str, index: int, id_: str) -> None:
        self.kind, self.index, self.id = kind, index, id_
        self.parts: list[str] = []          # text, summary text or argument fragments
        self.blocks: list[dict] = []        # thinking blocks (with their signatures)
        self.name = self.call_id = ""
        self.custom = False
        self.summary_open = False
        self.prefix = b""                   # pre-built start of this item's delta events


class ResponsesStream:
    """Renders one upstream stream; ``meter`` (read by the call pipeline) keeps what it used."""

    __slots__ = ("meter", "finish_reason", "_t", "_id", "_created", "_cost_of", "_seq", "_output", "_open",
                 "_message", "_started", "_thinking_chars", "_usage_raw")

    def __init__(self, t: ResponsesRequest, response_id: str, created_at: int,
                 cost_of: Callable[[Usage], str | None] | None = None) -> None:
        self.meter = StreamMeter(t.max_tokens)
        self.finish_reason: str | None = None
        self._t, self._id, self._created, self._cost_of = t, response_id, created_at, cost_of
        self._seq = 0
        self._output: list[dict] = []              # finished items, full (encrypted_content kept)
        self._open: dict[Any, _Item] = {}          # by Anthropic block index
        self._message: _Item | None = None         # the message item text blocks append to
        self._started = False
        self._thinking_chars = 0
        self._usage_raw: Any = None

    # --- the pipeline's interface -------------------------------------------------------

    def feed(self, event: str, data: dict, raw: bytes = b"") -> bytes:
        meter = self.meter
        if meter.done or meter.failed:
            return b""
        meter.observe(event, data)
        if event == "content_block_delta":
            return self._delta(data)
        if event == "content_block_start":
            return self._block_start(data)
        if event == "content_block_stop":
            return self._block_stop(data)
        if event == "message_start":
            return self._start()
        if event == "message_delta":
            if data.get("usage"):
                self._usage_raw = data["usage"]
            return b""
        if event == "message_stop":
            return self._finish()
        if event == "error":
            return self.fail(anthropic_stream_error(data))
        return b""  # ping, and event types added after this was written

    def fail(self, err: GatewayError) -> bytes:
        """``response.failed`` (after the opening events if they were not sent yet)."""
        head = self._start()
        error = {"code": err.code or err.type, "message": err.message}
        response = response_object(self._t, self._id, self._created, "failed", list(self._output), None, error=error)
        return head + self._event("response.failed", {"response": client_view(response, self._t)})

    # --- events ------------------------------------------------------------------------

    def _event(self, kind: str, payload: dict) -> bytes:
        seq = self._seq
        self._seq += 1
        return sse_event(kind, {"sequence_number": seq, **payload})

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = orjson.dumps(response_object(self._t, self._id, self._created, "in_progress", [], None))
        return (self._spliced("response.created", b"response", response)
                + self._spliced("response.in_progress", b"response", response))

    def _spliced(self, kind: str, field: bytes, value: bytes) -> bytes:
        """An event whose one payload field is JSON already serialised (sent twice, dumped once)."""
        head = b"event: " + kind.encode() + b'\ndata: {"type":"' + kind.encode() + b'","sequence_number":'
        return head + b"%d" % self._next() + b',"' + field + b'":' + value + b"}\n\n"

    def _block_start(self, data: dict) -> bytes:
        block = data.get("content_block") or {}
        kind = block.get("type")
        index = data.get("index")
        json_tool = self._t.json_tool
        if kind == "text" or (kind == "tool_use" and json_tool is not None and block.get("name") == json_tool):
            out, message = self._open_message()
            self._open[index] = message
            text = block.get("text") if kind == "text" else None
            return out + self._text(message, text) if text else out
        out = self._close_message()
        if kind in ("thinking", "redacted_thinking"):
            item = self._open[index] = _Item(_REASONING, len(self._output), item_id("rs", self._id, len(self._output)))
            item.blocks.append(dict(block))
            added = {"id": item.id, "type": "reasoning", "summary": []}
            return out + self._event("response.output_item.added", {"output_index": item.index, "item": added})
        if kind == "tool_use":
            return out + self._open_call(index, block)
        return out  # server tools and block types added later: nothing to show

    def _delta(self, data: dict) -> bytes:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        item = self._open.get(data.get("index"))
        if item is None:
            return b""
        if kind == "text_delta" or (kind == "input_json_delta" and item.kind == _TEXT):
            text = delta.get("text") if kind == "text_delta" else delta.get("partial_json")
            return self._text(item, text) if text else b""
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            if not fragment:
                return b""
            item.parts.append(fragment)
            if item.custom:
                return b""  # JSON-encoded upstream: the string is sent when the block ends
            self.meter.delivered(fragment)
            return b'%b%d,"delta":%b}\n\n' % (item.prefix, self._next(), orjson.dumps(fragment))
        if kind == "thinking_delta":
            return self._thinking(item, delta.get("thinking") or "")
        if kind == "signature_delta" and item.blocks:
            item.blocks[-1]["signature"] = item.blocks[-1].get("signature", "") + (delta.get("signature") or "")
        return b""

    def _block_stop(self, data: dict) -> bytes:
        item = self._open.pop(data.get("index"), None)
        if item is None or item.kind == _TEXT:
            return b""  # a message stays open: the next block may continue its text
        if item.kind == _REASONING:
            return self._close_reasoning(item)
        return self._close_call(item)

    def _finish(self) -> bytes:
        stop_reason = self.meter.stop_reason
        self.finish_reason = map_finish_reason(stop_reason, self._t)
        status, incomplete = status_of(stop_reason)
        out = self._close_message(status)
        for item in list(self._open.values()):  # blocks upstream never closed
            out += self._close_reasoning(item) if item.kind == _REASONING else self._close_call(item, "incomplete")
        self._open.clear()
        usage = self.meter.usage
        reasoning = thinking_tokens(self._usage_raw, self._thinking_chars)
        cost = self._cost_of(usage) if self._cost_of is not None else None
        response = response_object(self._t, self._id, self._created, status, self._output,
                                   usage_object(usage, reasoning, cost), incomplete=incomplete,
                                   completed_at=int(time.time()))
        self._t.response = response
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(kind, {"response": client_view(response, self._t)})

    # --- items -------------------------------------------------------------------------

    def _next(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def _open_message(self) -> tuple[bytes, _Item]:
        """The message item text goes to, opened (its events) if none is open."""
        if self._message is not None:
            return b"", self._message
        index = len(self._output)
        item = self._message = _Item(_TEXT, index, item_id("msg", self._id, index))
        where = b'"item_id":"%b","output_index":%d,"content_index":0' % (item.id.encode(), index)
        item.prefix = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                       + where + b',"logprobs":[],"sequence_number":')
        # Every text item opens and closes with the same five events: written from templates
        # (the text JSON-encoded once), not built as dicts and serialised one by one.
        added = _MESSAGE_ADDED % (self._next(), index, item.id.encode())
        return added + _PART_ADDED % (self._next(), where), item

    def _text(self, item: _Item, text: str) -> bytes:
        item.parts.append(text)
        self.meter.delivered(text)
        return b'%b%d,"delta":%b}\n\n' % (item.prefix, self._next(), orjson.dumps(text))

    def _close_message(self, status: str = "completed") -> bytes:
        item = self._message
        if item is None:
            return b""
        self._message = None
        for index, open_item in list(self._open.items()):
            if open_item is item:
                del self._open[index]
        text = "".join(item.parts)
        self._output.append(message_item(item.id, text, status))
        where = b'"item_id":"%b","output_index":%d,"content_index":0' % (item.id.encode(), item.index)
        encoded = orjson.dumps(text)
        part = b'{"type":"output_text","text":%b,"annotations":[],"logprobs":[]}' % encoded
        return (_TEXT_DONE % (self._next(), where, encoded) + _PART_DONE % (self._next(), where, part)
                + _ITEM_DONE % (self._next(), item.index, item.id.encode(), status.encode(), part))

    def _thinking(self, item: _Item, text: str) -> bytes:
        if not text or item.kind != _REASONING:
            return b""
        block = item.blocks[-1]
        block["thinking"] = block.get("thinking", "") + text
        self._thinking_chars += len(text)
        if not self._t.summary:
            return b""
        out = b""
        if not item.summary_open:
            item.summary_open = True
            out = self._event("response.reasoning_summary_part.added", {
                "item_id": item.id, "output_index": item.index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}})
        item.parts.append(text)
        self.meter.delivered(text)
        return out + self._event("response.reasoning_summary_text.delta", {
            "item_id": item.id, "output_index": item.index, "summary_index": 0, "delta": text})

    def _close_reasoning(self, item: _Item) -> bytes:
        text = "".join(item.parts)
        out = b""
        if item.summary_open:
            where = {"item_id": item.id, "output_index": item.index, "summary_index": 0}
            out = (self._event("response.reasoning_summary_text.done", {**where, "text": text})
                   + self._event("response.reasoning_summary_part.done",
                                 {**where, "part": {"type": "summary_text", "text": text}}))
        done = reasoning_item(item.blocks, self._t, item.id, text)
        self._output.append(done)
        shown = done if self._t.include_encrypted else {k: v for k, v in done.items() if k != "encrypted_content"}
        return out + self._event("response.output_item.done", {"output_index": item.index, "item": shown})

    def _open_call(self, index: Any, block: dict) -> bytes:
        position = len(self._output)
        item = self._open[index] = _Item(_CALL, position, "")
        item.name, item.call_id = block.get("name") or "", block.get("id") or ""
        added = call_item(self._t, self._id, position, item.call_id, item.name, "", "in_progress")
        item.id = added["id"]
        item.custom = added["type"] == "custom_tool_call"
        if not item.custom:
            item.prefix = (b'event: response.function_call_arguments.delta\ndata: {"type":'
                           b'"response.function_call_arguments.delta","item_id":"' + item.id.encode()
                           + b'","output_index":%d,"sequence_number":' % position)
        return self._event("response.output_item.added", {"output_index": position, "item": added})

    def _close_call(self, item: _Item, status: str = "completed") -> bytes:
        arguments = "".join(item.parts) or "{}"
        done = call_item(self._t, self._id, item.index, item.call_id, item.name, arguments, status)
        self._output.append(done)
        where = {"item_id": item.id, "output_index": item.index}
        if done["type"] == "custom_tool_call":
            text = done["input"]
            self.meter.delivered(text)
            out = (self._event("response.custom_tool_call_input.delta", {**where, "delta": text})
                   + self._event("response.custom_tool_call_input.done", {**where, "input": text}))
        else:
            out = b"" if item.parts else self._event("response.function_call_arguments.delta",
                                                     {**where, "delta": arguments})
            out += self._event("response.function_call_arguments.done", {**where, "name": done["name"],
                                                                         "arguments": arguments})
        return out + self._event("response.output_item.done", {"output_index": item.index, "item": done})

