"""POST /chat/completions: OpenAI Chat Completions in, Anthropic Messages upstream."""
from __future__ import annotations

import orjson

from proxy.api import error_response
from proxy.asgi import ApiRequest, Response
from proxy.auth import KeyInfo
from proxy.catalog import Catalog, CatalogEntry, model_not_found, successor_hint
from proxy.errors import GatewayError
from proxy.pipeline import Call, CallPlan, Rendered, StreamRenderer, endpoint
from proxy.translation import (
    StreamTranslator,
    Usage,
    anthropic_error_to_gateway,
    sse_error,
    translate_request,
    translate_response,
)
from proxy.upstream import UpstreamHTTPError


class ChatCompletions:
    api = "chat.completions"
    id_prefix = "chatcmpl-"
    keepalive: bytes | None = None

    def error_response(self, err: GatewayError, headers: dict[str, str] | None = None) -> Response:
        return error_response(err, headers)

    def unknown_model(self, name: str, key: KeyInfo, catalog: Catalog, exists: bool) -> GatewayError:
        return model_not_found(name)  # the same answer either way: a key's allow-list is not disclosed

    async def plan(self, call: Call, entry: CatalogEntry, body: dict, request: ApiRequest) -> CallPlan:
        t = translate_request(body, entry.spec, requested_model=call.requested_model)
        return CallPlan(payload=t.payload, stream=t.stream, max_tokens=t.max_tokens, end_user=t.user, context=t)

    def upstream_error(self, exc: UpstreamHTTPError, entry: CatalogEntry | None) -> GatewayError:
        return anthropic_error_to_gateway(exc.status, exc.body, exc.headers, not_found_hint=successor_hint(entry))

    def render(self, call: Call, message: dict, raw: bytes, usage: Usage) -> Rendered:
        assert call.plan is not None  # the pipeline renders only planned calls
        out = translate_response(message, call.plan.context, completion_id=call.generation_id,
                                 created=int(call.created.timestamp()))
        out["usage"]["cost"] = call.cost_text(usage)
        choice = out["choices"][0]
        return Rendered(orjson.dumps(out), choice["finish_reason"], choice["message"].get("content") or "")

    def stream_renderer(self, call: Call) -> StreamTranslator:
        assert call.plan is not None
        return StreamTranslator(call.plan.context, call.generation_id, int(call.created.timestamp()),
                                cost_of=call.cost_text)

    def stream_error(self, err: GatewayError, renderer: StreamRenderer) -> bytes:
        return sse_error(err)

    def stored_response(self, call: Call) -> None:
        return None  # stateless


chat_completions = endpoint(ChatCompletions())
