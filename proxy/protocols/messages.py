"""POST /messages: Anthropic's own Messages API, for Claude Code and the Anthropic SDKs.

No translation: the body goes upstream as sent except ``model`` (canonical id, alias or
upstream id → the model table's upstream id), with the client's ``anthropic-version`` and
``anthropic-beta`` headers (never its key), and the answer — JSON, or the SSE stream event
by event — comes back unchanged. The pipeline meters, limits, records and bills it like
every call. Only what the gateway must understand is checked (model, messages,
max_tokens, stream); everything else is upstream's to judge.
"""
from __future__ import annotations

import orjson
from django.conf import settings

from proxy.api import api_endpoint, openai_error_response, parse_json_object
from proxy.asgi import ApiRequest, Response, read_body
from proxy.auth import KeyInfo
from proxy.catalog import Catalog, CatalogEntry, visible_to
from proxy.errors import GatewayError, invalid
from proxy.pipeline import Call, CallPlan, Rendered, StreamRenderer, endpoint
from proxy.runtime import current
from proxy.translation import StreamMeter, Usage
from proxy.upstream import UpstreamHTTPError

from .anthropic_errors import UpstreamAnswer, anthropic_error_event, anthropic_error_response

DEFAULT_VERSION = "2023-06-01"
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_DELTA_TEXT: dict[str | None, str] = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


def upstream_headers(request: ApiRequest) -> dict[str, str]:
    """The Anthropic headers a client sets, passed on as sent (the key never is)."""
    headers = {"anthropic-version": request.headers.get("anthropic-version") or DEFAULT_VERSION}
    beta = request.headers.get("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    return headers


def upstream_path(path: str, request: ApiRequest) -> str:
    return path + ("?beta=true" if request.query.get("beta") == "true" else "")


def models_for(key: KeyInfo, catalog: Catalog) -> list[str]:
    return [e.spec.public_id for e in catalog.entries if visible_to(e, key)]


class PassthroughStream:
    """Forwards each upstream event as it came, while its meter reads it."""

    __slots__ = ("meter", "finish_reason")

    def __init__(self, max_tokens: int) -> None:
        self.meter = StreamMeter(max_tokens)
        self.finish_reason: str | None = None

    def feed(self, event: str, data: dict, raw: bytes = b"") -> bytes:
        meter = self.meter
        meter.observe(event, data)
        if event == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict):
                text = delta.get(_DELTA_TEXT.get(delta.get("type"), ""))
                if isinstance(text, str) and text:
                    meter.delivered(text)
        elif event == "message_delta":
            self.finish_reason = meter.stop_reason
        return raw


class Messages:
    api = "messages"
    id_prefix = "gen-"
    keepalive: bytes | None = PING

    def error_response(self, err: GatewayError, headers: dict[str, str] | None = None) -> Response:
        return anthropic_error_response(err, headers)

    def unknown_model(self, name: str, key: KeyInfo, catalog: Catalog, exists: bool) -> GatewayError:
        if exists:
            return GatewayError(403, f"model: {name} is not allowed for this API key.", param="model",
                                code="model_not_allowed")
        available = ", ".join(models_for(key, catalog)) or "none"
        return GatewayError(
            404, f"model: {name} is not available through this gateway. Models this key may use: {available}. "
                 "With Claude Code, pin them with ANTHROPIC_MODEL and ANTHROPIC_DEFAULT_OPUS_MODEL / "
                 "_SONNET_MODEL / _HAIKU_MODEL.", param="model", code="model_not_found")

    async def plan(self, call: Call, entry: CatalogEntry, body: dict, request: ApiRequest) -> CallPlan:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages: Field required (a non-empty array of messages).", "messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), (str, list)):
                raise invalid(f"messages.{i}: each message needs a role and content (a string or an array).",
                              f"messages.{i}")
        max_tokens = body.get("max_tokens")
        if type(max_tokens) is not int or max_tokens < 1:
            raise invalid("max_tokens: Field required (a positive integer).", "max_tokens")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise invalid("stream: Input should be a valid boolean.", "stream")
        metadata = body.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        body["model"] = entry.spec.upstream_id
        return CallPlan(payload=body, stream=stream, max_tokens=max_tokens,
                        end_user=user if isinstance(user, str) else None,
                        upstream_headers=upstream_headers(request),
                        upstream_path=upstream_path("/v1/messages", request))

    def upstream_error(self, exc: UpstreamHTTPError, entry: CatalogEntry | None) -> GatewayError:
        return UpstreamAnswer(exc.status, exc.body, exc.headers)

    def render(self, call: Call, message: dict, raw: bytes, usage: Usage) -> Rendered:
        completion = ""
        if settings.STORE_CONTENT:
            completion = "".join(b.get("text", "") for b in message.get("content") or () if b.get("type") == "text")
        return Rendered(raw, message.get("stop_reason"), completion)

    def stream_renderer(self, call: Call) -> PassthroughStream:
        assert call.plan is not None  # the pipeline renders only planned calls
        return PassthroughStream(call.plan.max_tokens)

    def stream_error(self, err: GatewayError, renderer: StreamRenderer) -> bytes:
        return anthropic_error_event(err)

    def stored_response(self, call: Call) -> None:
        return None  # stateless


MESSAGES = Messages()
messages = endpoint(MESSAGES)


def error_shape(request: ApiRequest):
    """Anthropic's error shape for requests that speak Anthropic (they send anthropic-version)."""
    return anthropic_error_response if "anthropic-version" in request.headers else openai_error_response


@api_endpoint("POST", errors=lambda request: anthropic_error_response)
async def count_tokens(request: ApiRequest, key: KeyInfo) -> Response:
    """Forwarded with the model rewritten; authenticated, but never recorded, billed or
    counted against spend limits (it costs nothing upstream)."""
    body = parse_json_object(await read_body(request))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required.", "model")
    runtime = current()
    catalog = await runtime.catalog.get()
    entry = catalog.resolve(model)
    if entry is None or not visible_to(entry, key):
        raise MESSAGES.unknown_model(model, key, catalog, entry is not None)
    if not isinstance(body.get("messages"), list):
        raise invalid("messages: Field required (an array of messages).", "messages")
    body["model"] = entry.spec.upstream_id
    try:
        response = await runtime.upstream.open_messages(orjson.dumps(body), upstream_headers(request),
                                                        upstream_path("/v1/messages/count_tokens", request))
    except UpstreamHTTPError as exc:
        raise UpstreamAnswer(exc.status, exc.body, exc.headers) from None
    try:
        raw = await response.aread()
    finally:
        await response.aclose()
    return Response(200, raw, {"x-upstream-request-id": response.headers.get("request-id", "")})
