"""A fast, deterministic fake of Anthropic's Messages API, as strict as the real one.

A raw ASGI application (no framework), byte-compatible with the real wire format
(tests/fixtures/anthropic/ holds recorded shapes) so the official ``anthropic`` SDKs and
Claude Code parse it. Used by the test suite, by ``make run`` without an API key and by
the benchmark.

Start it::

    python -m simulator --host 127.0.0.1 --port 8081
    # or, from Python: simulator.serve("127.0.0.1", 8081)

Routes (``?beta=true`` accepted everywhere, as Claude Code sends it; every response
carries ``request-id: req_...``; anything else -> 404 in Anthropic's error shape):

- ``POST /v1/messages`` — plain and SSE.
- ``POST /v1/messages/count_tokens`` — ``{"input_tokens": N}``, the whole prompt as
  ``/v1/messages`` counts it (its ``input_tokens`` + cache writes + cache reads).
- ``GET /v1/models`` (``limit``, ``after_id``, ``before_id``) and ``GET /v1/models/{id}``
  in Anthropic's shape.
- ``GET /_sim/requests?last=N`` — the last N requests received, all kept when N is omitted
  (simulator/recorder.py).
- ``DELETE /_sim/cache`` — forget the prompt cache; ``GET /healthz`` -> 200 ``ok``.

Validation (400 ``invalid_request_error`` naming the field, in the real API's words):
no ``x-api-key`` -> 401 ``authentication_error``; invalid JSON; ``model`` / ``max_tokens``
(int >= 1; not allowed on count_tokens) / ``messages`` (non-empty list) missing or
mistyped; any other top-level field than the SDK's request params -> "<field>: Extra
inputs are not permitted"; ``temperature``/``top_p`` outside 0..1; empty text blocks;
image ``media_type`` other than jpeg/png/gif/webp; ``thinking`` (``budget_tokens`` >= 1024
and < ``max_tokens``; ``enabled`` or ``adaptive`` only where the model takes it, see
simulator/models.py; with thinking: ``temperature`` 1 only, no ``top_k``, ``top_p`` >=
0.95, no forced ``tool_choice``; the last assistant message with ``tool_use`` must start
with its thinking; thinking blocks sent back must carry the signature the simulator gave,
see simulator/signing.py); ``output_config.effort``; ``cache_control`` (simulator/caching.py).
Bodies over 32 MiB -> 413. Models in ``RETIRED_MODELS`` (env ``SIM_RETIRED_MODELS``, comma
list) -> 404 ``not_found_error`` "model: <id>". ``anthropic-version`` is recorded, not
required; ``anthropic-beta`` values are all accepted unless ``strict_betas`` (simulator/betas.py).

Default behaviour:

- Reply: "Simulated reply to: <first words of the last user message>. This is a
  deterministic answer." (about a dozen words).
- Input tokens: see simulator/content.py (about UTF-8 bytes / 4, + 8, + 1600 per image).
  With ``cache_control`` breakpoints the prompt cache splits them into
  ``input_tokens`` (uncached), ``cache_creation_input_tokens`` (with the 5m/1h split in
  ``cache_creation``) and ``cache_read_input_tokens`` (simulator/caching.py).
- ``output_tokens`` = thinking words + words emitted (a "word" is a space-separated piece,
  streamed as one delta) + ceil(len(input JSON) / 4) + 10 per tool call; never 0.
- Thinking, when the request turns it on: a signed ``thinking`` block opens the answer
  (simulator/replies.py); streamed as ``thinking_delta`` events then a ``signature_delta``.
- ``max_tokens`` is honoured (reply cut to that many words, ``stop_reason: max_tokens``,
  tool calls that do not fit are dropped); so is ``stop_sequences`` (text cut before the
  earliest match, ``stop_reason: stop_sequence``, ``stop_sequence`` set).
- ``tool_choice`` ``{"type": "any"}`` / ``{"type": "tool", "name": X}`` always answers
  with a tool call (no text before it); ``{"type": "none"}`` never does.
- Structured output (``output_config.format`` or legacy top-level ``output_format`` of
  type ``json_schema``): the reply text is a JSON document generated from the schema.
- Tool inputs and structured outputs come from a small schema generator (simulator/schema.py).

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
``thinking_words=N``     with thinking on: a thinking block of N words (capped by
                         ``budget_tokens``); default by ``output_config.effort``
``redacted_thinking``    with thinking on: a ``redacted_thinking`` block (opaque ``data``,
                         32 output tokens) after the thinking block
``cache_min=N``          the minimum prefix, in tokens, the prompt cache stores (default
                         ``SIM_CACHE_MIN_TOKENS`` or 1; the real API needs 1024+)
``cache_read=N``         add N to ``usage.cache_read_input_tokens`` (on top of the cache)
``cache_write_5m=N``     add N 5-minute cache writes (``cache_creation_input_tokens`` too)
``cache_write_1h=N``     add N 1-hour cache writes (``cache_creation_input_tokens`` too)
``strict_betas``         400 for ``anthropic-beta`` values the real API does not know
``stop=REASON``          force ``stop_reason``: end_turn, max_tokens, stop_sequence,
                         pause_turn or refusal (content unchanged)
=======================  ==============================================================

Environment: ``SIM_RETIRED_MODELS``, ``SIM_CACHE_MIN_TOKENS``, ``SIM_STRICT_BETAS=1``,
``SIM_EXTRA_BETAS``, ``SIM_SIGNING_SECRET``, ``SIM_RECORDED_REQUESTS`` (default 200).
"""
from __future__ import annotations

import argparse
import asyncio
import os
from urllib.parse import parse_qs, unquote

import orjson

from . import betas, caching, errors, models, recorder, replies
from .errors import SimError, bad
from .options import Sim, arm_failures, options
from .replies import build_reply
from .schema import example_from_schema
from .validate import Request, validate
from .wire import JSON_HEADERS, respond, respond_error, stream, stream_events

__all__ = ["RETIRED_MODELS", "app", "example_from_schema", "main", "serve"]

MAX_BODY_BYTES = 32 * 1024 * 1024
RETIRED_MODELS: set[str] = {
    model.strip() for model in os.environ.get("SIM_RETIRED_MODELS", "").split(",") if model.strip()
}
_MODELS_PREFIX = "/v1/models/"


async def _read_body(receive, headers: dict) -> bytes:
    declared = headers.get(b"content-length", b"0")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
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


def _authenticate(headers: dict) -> None:
    key = headers.get(b"x-api-key")
    if key is None:
        raise SimError(401, "x-api-key header is required", "authentication_error")
    if not key.strip():
        raise SimError(401, "invalid x-api-key", "authentication_error")


async def _accept(scope, receive, entry: recorder.Recorded, count_tokens: bool) -> tuple[Request, Sim]:
    """Everything /v1/messages and count_tokens share: body, auth, validation, markers."""
    headers = dict(scope["headers"])
    body = await _read_body(receive, headers)
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        req = None
    entry.body = req
    _authenticate(headers)
    if req is None:
        raise bad("The request body is not valid JSON.")
    beta_header = headers.get(b"anthropic-beta")
    beta_values = betas.parse(beta_header.decode("latin-1")) if beta_header else []
    request = validate(req, count_tokens=count_tokens, cache_scope=bool(beta_values) and betas.allows_cache_scope(beta_values),
                       cacheable=b'"cache_control"' in body)
    sim_header = headers.get(b"x-sim")
    sim = options(sim_header, request.scan.last_user_text)
    if beta_values:
        betas.check(beta_values, sim.strict_betas or betas.STRICT_BY_DEFAULT)
    if sim.delay_ms:
        await asyncio.sleep(sim.delay_ms / 1000)
    if request.model in RETIRED_MODELS:
        raise errors.for_status(404, request.model)
    arm_failures(sim, hash((body, sim_header)))
    if sim.error:
        raise errors.for_status(sim.error, request.model)
    return request, sim


async def _messages(scope, receive, send, request_id: bytes, entry: recorder.Recorded) -> None:
    request, sim = await _accept(scope, receive, entry, count_tokens=False)
    if sim.midstream_error and not request.stream:
        raise errors.for_status(529, request.model)
    reply = build_reply(request, sim)
    scan = request.scan
    cache = caching.NO_CACHE
    if scan.breakpoints:
        min_tokens = caching.MIN_TOKENS if sim.cache_min is None else sim.cache_min
        thinking = request.thinking and (request.thinking.type, request.thinking.budget_tokens)
        cache = caching.account(request.model, thinking, scan.units, scan.breakpoints, min_tokens)
    usage = replies.usage(scan.input_tokens, cache, sim, reply.output_tokens)
    entry.status = 200  # recorded before a long stream ends
    if request.stream:
        await stream(send, stream_events(request.model, reply, usage), sim, request_id)
    else:
        message = replies.message(request.model, replies.content(reply), reply.stop_reason, reply.stop_sequence, usage)
        await respond(send, 200, orjson.dumps(message), JSON_HEADERS, request_id)


async def _count_tokens(scope, receive, send, request_id: bytes, entry: recorder.Recorded) -> None:
    request, _ = await _accept(scope, receive, entry, count_tokens=True)
    await respond(send, 200, orjson.dumps({"input_tokens": request.scan.input_tokens}), JSON_HEADERS, request_id)


def _query(scope) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _limit(value: str | None, default: int, maximum: int, name: str) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise bad(f"{name}: Input should be a valid integer, unable to parse string as an integer") from None
    if number < 1:
        raise bad(f"{name}: Input should be greater than or equal to 1")
    if number > maximum:
        raise bad(f"{name}: Input should be less than or equal to {maximum}")
    return number


async def _models(scope, send, request_id: bytes) -> None:
    _authenticate(dict(scope["headers"]))
    query = _query(scope)
    page = models.page(_limit(query.get("limit"), 20, 1000, "limit"), query.get("after_id"), query.get("before_id"))
    await respond(send, 200, orjson.dumps(page), JSON_HEADERS, request_id)


async def _model(scope, send, request_id: bytes) -> None:
    _authenticate(dict(scope["headers"]))
    model_id = unquote(scope["path"][len(_MODELS_PREFIX):])
    found = models.info(model_id)
    if found is None:
        raise errors.for_status(404, model_id)
    await respond(send, 200, orjson.dumps(found), JSON_HEADERS, request_id)


async def _recorded(scope, send, request_id: bytes) -> None:
    count = _limit(_query(scope).get("last"), recorder.CAPACITY, recorder.CAPACITY, "last")
    await respond(send, 200, orjson.dumps({"data": recorder.last(count)}), JSON_HEADERS, request_id)


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
    entry = recorder.start(scope, request_id) if path.startswith("/v1/") else None
    try:
        if entry is not None:
            await _api(scope, receive, send, request_id, entry)
        elif path == "/healthz" and method in ("GET", "HEAD"):
            await respond(send, 200, b"ok", [(b"content-type", b"text/plain")], request_id)
        elif path == "/_sim/requests" and method == "GET":
            await _recorded(scope, send, request_id)
        elif path == "/_sim/cache" and method == "DELETE":
            caching.clear()
            await respond(send, 200, b'{"cleared":true}', JSON_HEADERS, request_id)
        else:
            raise SimError(404, "Not Found", "not_found_error")
    except SimError as error:
        if entry is not None:
            entry.status = error.status
        await respond_error(send, error, request_id)
    else:
        if entry is not None:
            entry.status = 200


async def _api(scope, receive, send, request_id: bytes, entry: recorder.Recorded) -> None:
    """The Anthropic API routes (recorded)."""
    path, method = scope["path"], scope["method"]
    if path == "/v1/messages" and method == "POST":
        await _messages(scope, receive, send, request_id, entry)
    elif path == "/v1/messages/count_tokens" and method == "POST":
        await _count_tokens(scope, receive, send, request_id, entry)
    elif path == "/v1/models" and method == "GET":
        await _models(scope, send, request_id)
    elif path.startswith(_MODELS_PREFIX) and method == "GET":
        await _model(scope, send, request_id)
    else:
        raise SimError(404, "Not Found", "not_found_error")


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
