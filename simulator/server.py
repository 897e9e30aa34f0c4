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
import os

import orjson

from . import errors, replies
from .errors import SimError, bad
from .options import arm_failures, options
from .replies import build_reply
from .schema import example_from_schema
from .validate import validate
from .wire import JSON_HEADERS, respond, respond_error, stream, stream_events

__all__ = ["RETIRED_MODELS", "app", "example_from_schema", "main", "serve"]

MAX_BODY_BYTES = 32 * 1024 * 1024
RETIRED_MODELS: set[str] = {
    model.strip() for model in os.environ.get("SIM_RETIRED_MODELS", "").split(",") if model.strip()
}


async def _read_body(receive, headers: dict) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and int(declared) > MAX_BODY_BYTES:
        raise errors.for_status(413, "")
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
            raise errors.for_status(413, "")
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
        raise bad("The request body is not valid JSON.") from None
    scan = validate(req)
    model = req["model"]
    sim_header = headers.get(b"x-sim")
    sim = options(sim_header, scan.last_user_text)
    if sim.delay_ms:
        await asyncio.sleep(sim.delay_ms / 1000)
    if model in RETIRED_MODELS:
        raise errors.for_status(404, model)
    arm_failures(sim, hash((body, sim_header)))
    streaming = req.get("stream") is True
    if sim.error:
        raise errors.for_status(sim.error, model)
    if sim.midstream_error and not streaming:
        raise errors.for_status(529, model)
    reply = build_reply(req, sim, scan.last_user_text)
    usage = replies.usage(scan.input_tokens, sim, reply.output_tokens)
    if streaming:
        await stream(send, stream_events(model, reply, usage), sim, request_id)
    else:
        message = replies.message(model, replies.content(reply), reply.stop_reason, reply.stop_sequence, usage)
        await respond(send, 200, orjson.dumps(message), JSON_HEADERS, request_id)


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
            await respond(send, 200, b"ok", [(b"content-type", b"text/plain")], request_id)
        else:
            raise SimError(404, "Not Found", "not_found_error")
    except SimError as error:
        await respond_error(send, error, request_id)


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
