"""POST /responses: the OpenAI Responses API in, Anthropic Messages upstream.

The response id (``resp_…``) is the generation id. A successful answer the client asked to
``store`` is kept for its team (``proxy.stored_responses``), committed with the call's
record before the client gets its end, so ``previous_response_id`` works the moment the
answer is in.
"""
from __future__ import annotations

import time

import orjson
from django.conf import settings

from proxy import stored_responses
from proxy.api import error_response
from proxy.asgi import ApiRequest, Response
from proxy.auth import KeyInfo
from proxy.catalog import Catalog, CatalogEntry, model_not_found, successor_hint
from proxy.errors import GatewayError
from proxy.pipeline import Call, CallPlan, Rendered, StreamRenderer, endpoint
from proxy.translation import Usage, anthropic_error_to_gateway, map_finish_reason
from proxy.translation.fields import opt_str
from proxy.translation.responses_output import client_view, translate_message
from proxy.translation.responses_request import ResponsesRequest, translate_responses_request
from proxy.translation.responses_stream import ResponsesStream
from proxy.upstream import UpstreamHTTPError

IGNORED_TOOLS_HEADER = "x-tokenhub-ignored-tools"


class Responses:
    api = "responses"
    id_prefix = "resp_"
    # An SSE comment (every SSE client skips it): keeps proxies and idle timeouts at bay while
    # the model thinks without a summary to stream.
    keepalive: bytes | None = b": keepalive\n\n"

    def error_response(self, err: GatewayError, headers: dict[str, str] | None = None) -> Response:
        return error_response(err, headers)

    def unknown_model(self, name: str, key: KeyInfo, catalog: Catalog, exists: bool) -> GatewayError:
        return model_not_found(name)  # the same answer either way: a key's allow-list is not disclosed

    async def plan(self, call: Call, entry: CatalogEntry, body: dict, request: ApiRequest) -> CallPlan:
        previous = opt_str(body, "previous_response_id", 100)
        team_id = call.key.team_id
        assert team_id is not None  # keys that call models belong to a team (operator keys only manage)
        history = await stored_responses.conversation(team_id, previous) if previous else None
        t = translate_responses_request(body, entry.spec, requested_model=call.requested_model,
                                        store_enabled=settings.RESPONSES_STORE, history=history)
        headers = {IGNORED_TOOLS_HEADER: ",".join(t.ignored_tools)} if t.ignored_tools else None
        return CallPlan(payload=t.payload, stream=t.stream, max_tokens=t.max_tokens, end_user=t.user,
                        response_headers=headers, context=t)

    def upstream_error(self, exc: UpstreamHTTPError, entry: CatalogEntry | None) -> GatewayError:
        return anthropic_error_to_gateway(exc.status, exc.body, exc.headers, not_found_hint=successor_hint(entry))

    def render(self, call: Call, message: dict, raw: bytes, usage: Usage) -> Rendered:
        t = _context(call)
        t.response = response = translate_message(
            message, t, response_id=call.generation_id, created_at=int(call.created.timestamp()),
            completed_at=int(time.time()), usage=usage, cost=call.cost_text(usage))
        completion = ""
        if settings.STORE_CONTENT:
            completion = "".join(part["text"] for item in response["output"] if item["type"] == "message"
                                 for part in item["content"])
        return Rendered(orjson.dumps(client_view(response, t)), map_finish_reason(message.get("stop_reason"), t),
                        completion)

    def stream_renderer(self, call: Call) -> ResponsesStream:
        return ResponsesStream(_context(call), call.generation_id, int(call.created.timestamp()),
                               cost_of=call.cost_text)

    def stream_error(self, err: GatewayError, renderer: StreamRenderer) -> bytes:
        assert isinstance(renderer, ResponsesStream)  # the one stream_renderer makes
        return renderer.fail(err)

    def stored_response(self, call: Call) -> dict | None:
        t = _context(call)
        if not t.store or t.response is None:
            return None
        return stored_responses.row(call, t.response, t.input_items, t.previous_response_id)


def _context(call: Call) -> ResponsesRequest:
    assert call.plan is not None  # the pipeline renders and keeps only planned calls
    return call.plan.context


responses = endpoint(Responses())
