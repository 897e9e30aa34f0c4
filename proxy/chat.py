"""POST /chat/completions: validate, translate, forward, translate back, meter."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from billing.pricing import compute_cost, format_usd

from . import limits, metrics, upstream
from .api import api_endpoint, error_response, internal_error
from .asgi import ApiRequest, Response, StreamResponse, read_body
from .auth import KeyInfo
from .catalog import CatalogEntry, get_catalog
from .errors import GatewayError
from .recorder import writer
from .sse import iter_events
from .streaming import StreamTranslator, sse_error
from .translate import (
    Translated,
    Usage,
    anthropic_error_to_gateway,
    estimate_input_tokens_upper_bound,
    normalize_usage,
    translate_request,
    translate_response,
)
from .views import model_not_found, visible_to

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Call:
    """What we know about one call while it runs; becomes its RequestRecord."""

    key: KeyInfo
    generation_id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    started: float = field(default_factory=time.perf_counter)
    created: datetime = field(default_factory=timezone.now)
    requested_model: str = ""
    entry: CatalogEntry | None = None
    translated: Translated | None = None
    upstream_request_id: str = ""
    ttft_ms: int | None = None
    reservation: limits.Reservation | None = None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-Generation-Id": self.generation_id, "x-request-id": self.generation_id}
        if self.upstream_request_id:
            headers["x-upstream-request-id"] = self.upstream_request_id
        if self.reservation is not None:
            headers.update(self.reservation.rate_headers)
        return headers

    def cost(self, usage: Usage) -> Decimal | None:
        price = self.entry.price_at(self.created) if self.entry else None
        if price is None:
            return None
        return compute_cost(
            price, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_write_5m=usage.cache_write_5m, cache_write_1h=usage.cache_write_1h, cache_read=usage.cache_read,
        )

    def cost_text(self, usage: Usage) -> str | None:
        """`usage.cost` on the wire: the exact amount as a decimal string (no float rounding)."""
        cost = self.cost(usage)
        return None if cost is None else format_usd(cost)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    async def record(self, *, status: str, http_status: int, usage: Usage | None = None, error: GatewayError | None = None,
                     finish_reason: str | None = None, output_estimated: bool = False, upstream_model: str | None = None,
                     completion: str = "") -> None:
        usage = usage or Usage()
        t = self.translated
        fields = dict(
            generation_id=self.generation_id, api_key_id=self.key.id, team_id=self.key.team_id,
            end_user=_text(t.user or "", 256) if t else "", requested_model=_text(self.requested_model, 100),
            model_id=self.entry.model_id if self.entry else None,
            upstream_model=_text(upstream_model or (self.entry.spec.upstream_id if self.entry else ""), 100),
            status=status, http_status=http_status,
            error_type=_text(error.code or error.type, 64) if error else "",
            error_message=_text(error.message, 2000) if error else "",
            streamed=bool(t and t.stream), input_tokens=usage.input_tokens,
            cache_write_5m_tokens=usage.cache_write_5m, cache_write_1h_tokens=usage.cache_write_1h,
            cache_read_tokens=usage.cache_read, output_tokens=usage.output_tokens,
            output_estimated=output_estimated, finish_reason=finish_reason or "",
            latency_ms=self.elapsed_ms(), ttft_ms=self.ttft_ms,
            upstream_request_id=_text(self.upstream_request_id, 100), created=self.created,
        )
        if settings.STORE_CONTENT and t is not None:
            fields["prompt"] = t.payload.get("messages")
            fields["completion"] = _text(completion, len(completion))
        await writer.write(fields)
        billed = status in ("success", "cancelled")
        billed_cost = self.cost(usage) if billed else None
        metrics.observe(self.entry.spec.public_id if self.entry else "unknown", fields, billed_cost)
        if self.reservation is not None:  # after the commit: a ledger rebuild then sees this record
            limits.settle_soon(self.reservation, billed_cost or Decimal(0),
                               usage.prompt_tokens + usage.output_tokens if billed else 0)


@api_endpoint("POST")
async def chat_completions(request: ApiRequest, key: KeyInfo):
    call = Call(key=key)
    try:
        return await _complete(request, call)
    except Exception as exc:  # every call is recorded, failures too
        err = exc if isinstance(exc, GatewayError) else internal_error()
        if err is not exc:
            log.exception("unhandled error in chat completion %s", call.generation_id)
        await call.record(status="error", http_status=err.status, error=err)
        return error_response(err, call.headers)


def _parse_body(raw: bytes) -> dict:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GatewayError(400, f"We could not parse the JSON body of your request: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    if b"\\u0000" in raw and _contains_nul(body):  # JSON can only carry NUL escaped; cheap pre-check
        raise GatewayError(400, "Strings must not contain NUL (\\u0000) characters.", code="invalid_value")
    return body


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def _text(value: str, limit: int) -> str:
    """Database-safe text for the record (PostgreSQL rejects NUL, e.g. in an upstream message)."""
    return value[:limit].replace("\x00", "\ufffd")


async def _complete(request: ApiRequest, call: Call):
    body = _parse_body(await read_body(request))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    call.requested_model = model
    entry = (await get_catalog()).resolve(model)
    if entry is None or not visible_to(entry, call.key):
        raise model_not_found(model)
    call.entry = entry
    call.translated = t = translate_request(body, entry.spec, requested_model=model)
    await _reserve(call)
    response = await _open_upstream(call, orjson.dumps(t.payload))
    if t.stream:
        return StreamResponse(200, _stream(call, response), {**call.headers, "cache-control": "no-cache"})
    return await _plain(call, response)


async def _reserve(call: Call) -> None:
    """Hold the worst case against the key's and team's limits before going upstream."""
    t = call.translated
    input_bound = estimate_input_tokens_upper_bound(t.payload)
    price = call.entry.price_at(call.created)
    worst = limits.worst_case_cost(price, input_bound, t.max_tokens) if price else Decimal(0)
    call.reservation = await limits.reserve(call.key, call.generation_id, call.created, worst,
                                            input_bound + t.max_tokens)


async def _open_upstream(call: Call, payload: bytes) -> httpx.Response:
    try:
        response = await upstream.open_messages(payload)
    except upstream.UpstreamHTTPError as exc:
        metrics.upstream_error(exc.status)
        call.upstream_request_id = exc.headers.get("request-id", "")
        raise anthropic_error_to_gateway(exc.status, exc.body, exc.headers, not_found_hint=_successor_hint(call.entry)) from None
    call.upstream_request_id = response.headers.get("request-id", "")
    return response


def _successor_hint(entry: CatalogEntry | None) -> str | None:
    if entry is None or not entry.successor:
        return None
    since = f" (retired {entry.retired_on})" if entry.retired_on else ""
    return (f"The model `{entry.spec.public_id}` is no longer served upstream{since}; "
            f"use `{entry.successor}` instead.")


def _bad_upstream_body() -> GatewayError:
    return GatewayError(502, "The upstream API returned a response the gateway could not read.",
                        type="server_error", code="upstream_bad_response")


async def _plain(call: Call, response: httpx.Response) -> Response:
    try:
        raw = await response.aread()
    except httpx.HTTPError:
        raise GatewayError(502, "The upstream connection failed while reading the response.",
                           type="server_error", code="upstream_error") from None
    finally:
        await response.aclose()
    try:
        message = orjson.loads(raw)
        usage = normalize_usage(message.get("usage"))
        out = translate_response(message, call.translated, completion_id=call.generation_id,
                                 created=int(call.created.timestamp()))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        log.warning("unreadable upstream body for %s", call.generation_id)
        raise _bad_upstream_body() from None
    out["usage"]["cost"] = call.cost_text(usage)
    choice = out["choices"][0]
    await call.record(status="success", http_status=200, usage=usage, finish_reason=choice["finish_reason"],
                      upstream_model=message.get("model"), completion=choice["message"].get("content") or "")
    return Response(200, orjson.dumps(out), call.headers)


async def _stream(call: Call, response: httpx.Response):
    """Relays upstream events as OpenAI chunks the moment they arrive. The record is
    committed before the client gets `[DONE]`; if the client goes away (cancellation at
    an await, or GeneratorExit at a yield) upstream is closed and what was delivered is
    billed as cancelled."""
    translator = StreamTranslator(call.translated, call.generation_id, int(call.created.timestamp()),
                                  cost_of=call.cost_text)
    outcome: dict | None = None
    raw = response.aiter_raw()
    try:
        async for event, data in iter_events(raw):
            out = translator.feed(event, data)
            if translator.done:
                outcome = {"status": "success", "http_status": 200}
                # shielded: a client leaving during the commit must not skip the settle
                await asyncio.shield(_record_stream(call, translator, outcome))
                yield out
                return
            if translator.failed:
                outcome = {"status": "error", "http_status": 200, "error": _stream_failure(translator)}
                yield out
                return
            if out:
                if call.ttft_ms is None and event == "content_block_delta":
                    call.ttft_ms = call.elapsed_ms()
                yield out
        outcome = {"status": "error", "http_status": 200, "error": GatewayError(
            502, "The upstream stream ended before the answer was complete.",
            type="server_error", code="upstream_stream_truncated")}
        yield sse_error(outcome["error"])
    except httpx.HTTPError as exc:
        outcome = {"status": "error", "http_status": 200, "error": GatewayError(
            502, f"The upstream stream failed: {type(exc).__name__}.", type="server_error",
            code="upstream_stream_error")}
        yield sse_error(outcome["error"])
    finally:
        if outcome is not None and outcome["status"] == "success":
            with contextlib.suppress(httpx.HTTPError):
                async for _ in raw:  # the last bytes after message_stop: the connection goes back to the pool
                    pass
        await response.aclose()
        if outcome is None or outcome["status"] != "success":
            await asyncio.shield(_record_stream(call, translator, outcome or {"status": "cancelled", "http_status": 499}))


def _stream_failure(translator: StreamTranslator) -> GatewayError:
    return GatewayError(502, f"Upstream error during the stream: {translator.error_type or 'unknown'}.",
                        type="server_error", code=translator.error_type or "upstream_stream_error")


async def _record_stream(call: Call, translator: StreamTranslator, outcome: dict) -> None:
    usage = translator.usage
    estimated = False
    if outcome["status"] == "cancelled":
        estimated = not translator.usage_final
        usage = Usage(usage.input_tokens, usage.cache_write_5m, usage.cache_write_1h, usage.cache_read,
                      translator.estimated_output_tokens())
    await call.record(status=outcome["status"], http_status=outcome["http_status"], usage=usage,
                      error=outcome.get("error"), finish_reason=translator.finish_reason,
                      output_estimated=estimated, upstream_model=translator.upstream_model)
