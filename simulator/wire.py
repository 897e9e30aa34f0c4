"""Bytes on the wire: JSON bodies, SSE events in the real order, and the ASGI sends.

Streams: message_start (input usage, ``output_tokens: 1``), per block content_block_start
/ deltas / content_block_stop with a ``ping`` after the first content_block_start,
message_delta (stop_reason, cumulative ``output_tokens``), message_stop. Text and
thinking stream one word per delta; a thinking block ends with its ``signature_delta``;
redacted thinking arrives whole in its content_block_start; tool inputs stream as
``input_json_delta`` fragments. Each event is its own ASGI body message.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from .errors import RETRY_AFTER_STATUSES, SimError
from .options import Sim
from .replies import Reply, message

_JSON_CHUNK_CHARS = 12
JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
_DELTA_PREFIX = b"event: content_block_delta\n"
_MESSAGE_DELTA_PREFIX = b"event: message_delta\n"
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
_OVERLOADED_EVENT = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


def _event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _delta_head(index: int, delta_type: bytes, field_name: bytes) -> bytes:
    return (
        _DELTA_PREFIX
        + b'data: {"type":"content_block_delta","index":'
        + str(index).encode()
        + b',"delta":{"type":"' + delta_type + b'","' + field_name + b'":'
    )


def _block_events(index: int, block: tuple) -> list[bytes]:
    start_block, delta_type, field_name, pieces, last_delta = block
    start = {"type": "content_block_start", "index": index, "content_block": start_block}
    events = [_event("content_block_start", start)]
    if pieces:
        head = _delta_head(index, delta_type, field_name)
        events.extend(head + orjson.dumps(piece) + b"}}\n\n" for piece in pieces)
    if last_delta:
        events.append(_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": last_delta}))
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _text_pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0], *(" " + word for word in words[1:])]


def _json_pieces(text: str) -> list[str]:
    return ["", *(text[i : i + _JSON_CHUNK_CHARS] for i in range(0, len(text), _JSON_CHUNK_CHARS))]


def stream_events(model: str, reply: Reply, usage: dict) -> list[bytes]:
    """All events of a stream, in order, each ready to send."""
    start_usage = {**usage, "output_tokens": 1}
    start = message(model, [], None, None, start_usage)
    events = [_event("message_start", {"type": "message_start", "message": start})]
    # (content_block_start block, delta type, delta field, pieces, final delta)
    blocks: list[tuple[dict, bytes, bytes, Sequence[str], dict | None]] = []
    if reply.thinking is not None:
        signature = {"type": "signature_delta", "signature": reply.signature}
        pieces = _text_pieces(reply.thinking)  # one empty thinking_delta when display is "omitted"
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, b"thinking_delta", b"thinking", pieces,
                       signature))
    if reply.redacted is not None:  # arrives whole in content_block_start
        blocks.append(({"type": "redacted_thinking", "data": reply.redacted}, b"", b"", (), None))
    if reply.text:
        blocks.append(({"type": "text", "text": ""}, b"text_delta", b"text", _text_pieces(reply.text), None))
    for tool in reply.tools:
        start_block = {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}
        blocks.append((start_block, b"input_json_delta", b"partial_json", _json_pieces(tool.input_json), None))
    for index, block in enumerate(blocks):
        block_events = _block_events(index, block)
        events.extend(block_events if index else [block_events[0], _PING, *block_events[1:]])
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


async def respond(send, status: int, body: bytes, headers: list, request_id: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"request-id", request_id), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(send, error: SimError, request_id: bytes) -> None:
    body = orjson.dumps(
        {
            "type": "error",
            "error": {"type": error.error_type, "message": error.message},
            "request_id": request_id.decode(),
        }
    )
    headers = JSON_HEADERS
    if error.status in RETRY_AFTER_STATUSES:
        headers = [*headers, (b"retry-after", b"1")]
    await respond(send, error.status, body, headers, request_id)


async def stream(send, events: list[bytes], sim: Sim, request_id: bytes) -> None:
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
