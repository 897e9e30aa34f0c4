"""One call's lifecycle, whatever wire protocol the client speaks.

authenticate → read and parse the body → resolve the model → the protocol turns the body
into a `CallPlan` (the Anthropic Messages request plus what metering needs) → reserve the
worst case against the key's limits → call upstream (plain or stream) → meter → record →
settle. The rules for failures (recorded, never billed, the reservation released) and for
client cancels (billed for the input and the output delivered, flagged as estimated) live
here once. A protocol adapter (``proxy.protocols``) only parses its request and renders
the upstream answer, stream or error in its own shape.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from billing.pricing import compute_cost, format_usd

from . import limits, metrics, upstream
from .api import internal_error, parse_json_object
from .asgi import ApiRequest, Response, StreamResponse, read_body
from .auth import KeyInfo, authenticate
from .catalog import Catalog, CatalogEntry, visible_to
from .errors import GatewayError
from .recorder import STORED_RESPONSE
from .reservation import estimate_input_tokens_upper_bound, worst_case_cost
from .runtime import Runtime, current
from .sse import iter_event_batches
from .translation.usage import StreamMeter, Usage, normalize_usage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CallPlan:
    """The internal description of one call, built by a protocol from its request."""

    payload: dict                      # the Anthropic Messages request; "model" is the upstream id
    stream: bool
    max_tokens: int                    # output ceiling (for the reservation and cancel estimates)
    end_user: str | None = None        # for the request log
    upstream_headers: dict[str, str] | None = None  # e.g. anthropic-beta, passed on as sent
    upstream_path: str = "/v1/messages"
    response_headers: dict[str, str] | None = None  # added to the client's answer, plain or streamed
    context: Any = None                # the protocol's own state for rendering


@dataclass(slots=True)
class Rendered:
    body: bytes
    finish_reason: str | None = None
    completion: str = ""               # stored only with STORE_CONTENT
    headers: dict[str, str] = field(default_factory=dict)


class StreamRenderer(Protocol):
    meter: StreamMeter
    finish_reason: str | None

    def feed(self, event: str, data: dict, raw: bytes = b"") -> bytes: ...


class WireProtocol(Protocol):
    """What a front door (Chat Completions, Messages, Responses) supplies to the pipeline."""

    api: str                  # RequestRecord.Api value
    id_prefix: str            # of the generation id
    keepalive: bytes | None   # sent during a stream after STREAM_KEEPALIVE_SECONDS of silence

    def error_response(self, err: GatewayError, headers: dict[str, str] | None = None) -> Response: ...

    def unknown_model(self, name: str, key: KeyInfo, catalog: Catalog, exists: bool) -> GatewayError:
        """The model does not resolve, or (`exists`) the key may not use it."""

    async def plan(self, call: Call, entry: CatalogEntry, body: dict, request: ApiRequest) -> CallPlan:
        """The call plan from the parsed body for the resolved model; ``call`` has the key and the
        requested model. Async so a protocol can read server-side state (a stored conversation)."""
        ...

    def upstream_error(self, exc: upstream.UpstreamHTTPError, entry: CatalogEntry | None) -> GatewayError: ...

    def render(self, call: Call, message: dict, raw: bytes, usage: Usage) -> Rendered: ...

    def stream_renderer(self, call: Call) -> StreamRenderer: ...

    def stream_error(self, err: GatewayError, renderer: StreamRenderer) -> bytes:
        """The bytes that end a stream the gateway has to cut short (the renderer knows what
        was sent so far)."""
        ...

    def stored_response(self, call: Call) -> dict | None:
        """What a successful call keeps for later besides its record (the Responses API's
        stored response, as ``StoredResponse`` fields), committed in the same statement so
        it exists the moment the client has the answer; None for stateless protocols."""
        ...


@dataclass(slots=True)
class Call:
    """What we know about one call while it runs; becomes its RequestRecord."""

    key: KeyInfo
    protocol: WireProtocol
    runtime: Runtime
    generation_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    created: datetime = field(default_factory=timezone.now)
    requested_model: str = ""
    entry: CatalogEntry | None = None
    plan: CallPlan | None = None
    upstream_request_id: str = ""
    ttft_ms: int | None = None
    reservation: limits.Reservation | None = None
    recorded: bool = False
    last_cost: tuple[Usage, Decimal | None] | None = None  # the answer's cost is asked for twice

    def __post_init__(self) -> None:
        self.generation_id = self.generation_id or self.protocol.id_prefix + secrets.token_hex(12)

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-Generation-Id": self.generation_id, "x-request-id": self.generation_id}
        if self.upstream_request_id:
            headers["x-upstream-request-id"] = self.upstream_request_id
        if self.reservation is not None:
            headers.update(self.reservation.rate_headers)
        return headers

    def cost(self, usage: Usage) -> Decimal | None:
        if self.last_cost is not None and self.last_cost[0] == usage:  # frozen: equal counts, equal cost
            return self.last_cost[1]
        price = self.entry.price_at(self.created) if self.entry else None
        cost = None if price is None else compute_cost(price, usage)
        self.last_cost = (usage, cost)
        return cost

    def cost_text(self, usage: Usage) -> str | None:
        """The billed amount on the wire: an exact decimal string (no float rounding)."""
        cost = self.cost(usage)
        return None if cost is None else format_usd(cost)

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    async def record(self, *, status: str, http_status: int, usage: Usage | None = None,
                     error: GatewayError | None = None, finish_reason: str | None = None,
                     output_estimated: bool = False, upstream_model: str | None = None, completion: str = "") -> None:
        """Commit the request record, then settle the reservation (after the commit: a ledger
        rebuild then sees this record)."""
        self.recorded = True
        usage = usage or Usage()
        plan = self.plan
        fields: dict[str, Any] = dict(
            generation_id=self.generation_id, api=self.protocol.api, api_key_id=self.key.id, team_id=self.key.team_id,
            end_user=_text(plan.end_user or "", 256) if plan else "", requested_model=_text(self.requested_model, 100),
            model_id=self.entry.model_id if self.entry else None,
            upstream_model=_text(upstream_model or (self.entry.spec.upstream_id if self.entry else ""), 100),
            status=status, http_status=http_status,
            error_type=_text(error.code or error.type, 64) if error else "",
            error_message=_text(error.message, 2000) if error else "",
            streamed=bool(plan and plan.stream), **usage.columns(),
            output_estimated=output_estimated, finish_reason=finish_reason or "",
            latency_ms=self.elapsed_ms(), ttft_ms=self.ttft_ms,
            upstream_request_id=_text(self.upstream_request_id, 100), created=self.created,
        )
        if settings.STORE_CONTENT and plan is not None:
            fields["prompt"] = plan.payload.get("messages")
            fields["completion"] = _text(completion, len(completion))
        if status == "success" and (stored := self.protocol.stored_response(self)) is not None:
            fields[STORED_RESPONSE] = stored
        # shielded: a cancel (the process is stopping) must not part the record from its settle
        await asyncio.shield(self._commit(fields, status, usage))

    async def _commit(self, fields: dict, status: str, usage: Usage) -> None:
        await self.runtime.writer.write(fields)
        billed = status in ("success", "cancelled")
        billed_cost = self.cost(usage) if billed else None
        metrics.observe(self.entry.spec.public_id if self.entry else "unknown", fields, billed_cost)
        if self.reservation is not None:
            limits.settle_soon(self.runtime.limits, self.reservation, billed_cost or Decimal(0),
                               usage.total_tokens if billed else 0)


def endpoint(protocol: WireProtocol):
    """The ASGI-router handler of one front door."""

    async def handle(request: ApiRequest) -> Response | StreamResponse:
        runtime = current()
        try:
            if request.method != "POST":
                raise GatewayError(405, f"Method {request.method} is not allowed here.", code="method_not_allowed")
            key = await authenticate(runtime.keys, request.headers)
        except GatewayError as err:
            return protocol.error_response(err)
        call = Call(key=key, protocol=protocol, runtime=runtime)
        try:
            return await _run(call, request)
        except asyncio.CancelledError:
            if call.recorded:
                raise
            # The process is stopping and its grace period is over, before anything was sent
            # (a stream under way ends as a client cancel instead): a retryable 503, recorded.
            stopping = GatewayError(503, "The gateway is restarting; retry the request.", type="server_error",
                                    code="gateway_stopping", headers={"Retry-After": "1"})
            await asyncio.shield(call.record(status="error", http_status=503, error=stopping))
            return protocol.error_response(stopping, call.headers)
        except Exception as exc:  # every call is recorded, failures too
            error = exc if isinstance(exc, GatewayError) else internal_error()
            if error is not exc:
                log.exception("unhandled error in call %s", call.generation_id)
            await call.record(status="error", http_status=error.status, error=error)
            return protocol.error_response(error, call.headers)

    return handle


async def _run(call: Call, request: ApiRequest) -> Response | StreamResponse:
    body = parse_json_object(await read_body(request))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    call.requested_model = model
    catalog = await call.runtime.catalog.get()
    entry = catalog.resolve(model)
    if entry is None or not visible_to(entry, call.key):
        raise call.protocol.unknown_model(model, call.key, catalog, entry is not None)
    call.entry = entry
    call.plan = plan = await call.protocol.plan(call, entry, body, request)
    await _reserve(call, entry, plan)
    response = await _open_upstream(call, orjson.dumps(plan.payload), plan)
    if plan.stream:
        keepalive = call.protocol.keepalive
        headers = {**call.headers, **(plan.response_headers or {}), "cache-control": "no-cache"}
        return StreamResponse(200, _stream(call, response), headers,
                              keepalive=(keepalive, settings.STREAM_KEEPALIVE_SECONDS) if keepalive else None)
    return await _plain(call, response, plan)


async def _reserve(call: Call, entry: CatalogEntry, plan: CallPlan) -> None:
    """Hold the worst case against the key's and team's limits before going upstream."""
    input_bound = estimate_input_tokens_upper_bound(plan.payload)
    price = entry.price_at(call.created)
    worst = worst_case_cost(price, input_bound, plan.max_tokens) if price else Decimal(0)
    call.reservation = await limits.reserve(call.runtime.limits, call.key, call.generation_id, call.created,
                                            worst, input_bound + plan.max_tokens)


async def _open_upstream(call: Call, payload: bytes, plan: CallPlan) -> httpx.Response:
    try:
        response = await call.runtime.upstream.open_messages(payload, plan.upstream_headers, plan.upstream_path)
    except upstream.UpstreamHTTPError as exc:
        metrics.upstream_error(exc.status)
        call.upstream_request_id = exc.headers.get("request-id", "")
        raise call.protocol.upstream_error(exc, call.entry) from None
    call.upstream_request_id = response.headers.get("request-id", "")
    return response


def bad_upstream_body() -> GatewayError:
    return GatewayError(502, "The upstream API returned a response the gateway could not read.",
                        type="server_error", code="upstream_bad_response")


async def _plain(call: Call, response: httpx.Response, plan: CallPlan) -> Response:
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
        rendered = call.protocol.render(call, message, raw, usage)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        log.warning("unreadable upstream body for %s", call.generation_id)
        raise bad_upstream_body() from None
    await call.record(status="success", http_status=200, usage=usage, finish_reason=rendered.finish_reason,
                      upstream_model=message.get("model"), completion=rendered.completion)
    return Response(200, rendered.body, {**call.headers, **(plan.response_headers or {}), **rendered.headers})


async def _stream(call: Call, response: httpx.Response) -> AsyncGenerator[bytes, None]:
    """Relays upstream events in the client's shape the moment they arrive. The record is
    committed before the client gets the end of the stream; if the client goes away
    (cancellation at an await, or GeneratorExit at a yield) upstream is closed and what was
    delivered is billed as cancelled."""
    renderer = call.protocol.stream_renderer(call)
    meter = renderer.meter
    outcome: dict | None = None
    raw = response.aiter_raw()
    try:
        async for events in iter_event_batches(raw):
            pending: list[bytes] = []  # what this read brought, rendered: one write to the client
            for event, data, block in events:
                out = renderer.feed(event, data, block)
                if meter.done:
                    if pending:
                        yield b"".join(pending)
                    outcome = {"status": "success", "http_status": 200}
                    # shielded: a client leaving during the commit must not skip the settle
                    await asyncio.shield(_record_stream(call, renderer, outcome))
                    yield out
                    return
                if meter.failed:
                    outcome = {"status": "error", "http_status": 200, "error": _stream_failure(meter)}
                    yield b"".join(pending) + out
                    return
                if out:
                    if call.ttft_ms is None and event == "content_block_delta":
                        call.ttft_ms = call.elapsed_ms()
                    pending.append(out)
            if pending:
                yield b"".join(pending)
        outcome = {"status": "error", "http_status": 200, "error": GatewayError(
            502, "The upstream stream ended before the answer was complete.",
            type="server_error", code="upstream_stream_truncated")}
        yield call.protocol.stream_error(outcome["error"], renderer)
    except httpx.HTTPError as exc:
        outcome = {"status": "error", "http_status": 200, "error": GatewayError(
            502, f"The upstream stream failed: {type(exc).__name__}.", type="server_error",
            code="upstream_stream_error")}
        yield call.protocol.stream_error(outcome["error"], renderer)
    finally:
        if outcome is not None and outcome["status"] == "success":
            with contextlib.suppress(httpx.HTTPError):
                async for _ in raw:  # the last bytes after message_stop: the connection goes back to the pool
                    pass
        await response.aclose()
        if outcome is None or outcome["status"] != "success":
            await asyncio.shield(_record_stream(call, renderer, outcome or {"status": "cancelled", "http_status": 499}))


def _stream_failure(meter: StreamMeter) -> GatewayError:
    return GatewayError(502, f"Upstream error during the stream: {meter.error_type or 'unknown'}.",
                        type="server_error", code=meter.error_type or "upstream_stream_error")


async def _record_stream(call: Call, renderer: StreamRenderer, outcome: dict) -> None:
    usage, estimated = renderer.meter.billed_usage(cancelled=outcome["status"] == "cancelled")
    await call.record(status=outcome["status"], http_status=outcome["http_status"], usage=usage,
                      error=outcome.get("error"), finish_reason=renderer.finish_reason,
                      output_estimated=estimated, upstream_model=renderer.meter.upstream_model)


def _text(value: str, limit: int) -> str:
    """Database-safe text for the record (PostgreSQL rejects NUL, e.g. in an upstream message)."""
    return value[:limit].replace("\x00", "\ufffd")
