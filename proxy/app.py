"""The API's ASGI app: routes /api/v1 and /v1 (and the operations endpoints)."""
from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from . import ops, stored_responses, views
from .api import error_response, internal_error
from .asgi import ApiRequest, Headers, Response, Router, StreamResponse, send_response
from .errors import GatewayError
from .protocols.chat_completions import chat_completions
from .protocols.messages import count_tokens, messages
from .protocols.responses import responses

log = logging.getLogger(__name__)

router = Router()
router.add("/chat/completions", chat_completions)
router.add("/messages", messages)
router.add("/messages/count_tokens", count_tokens)
router.add("/responses", responses)
router.add("/responses/", stored_responses.stored_response, prefix=True)
router.add("/models", views.models_list)
router.add("/models/", views.model_detail, prefix=True)
router.add("/key", views.key_info)
router.add("/generation", views.generation)

OPS = {"/healthz": ops.healthz, "/readyz": ops.readyz}


def handles(path: str) -> bool:
    return path in OPS or router.owns(path)


async def app(scope, receive, send) -> None:
    path = scope["path"]
    request = ApiRequest(
        method=scope["method"], path=path, headers=Headers.from_scope(scope),
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))), receive=receive,
    )
    handler = OPS.get(path) or router.match(path)
    response: Response | StreamResponse
    try:
        if handler is None:
            response = error_response(GatewayError(404, f"Unknown endpoint: {request.method} {path}", code="unknown_url"))
        else:
            response = await handler(request)
    except Exception:
        log.exception("unhandled error for %s", path)
        response = error_response(internal_error())
    await send_response(send, receive, response)
