"""The decorator every /api/v1 handler goes through: method check, key auth,
OpenAI-shaped errors (never a bare 500)."""
from __future__ import annotations

import functools
import logging

import orjson

from .asgi import ApiRequest, Response
from .auth import authenticate
from .errors import GatewayError

log = logging.getLogger(__name__)


def json_response(data, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(data), headers or {})


def error_response(err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return Response(err.status, err.json_bytes(), {**err.headers, **(headers or {})})


def internal_error() -> GatewayError:
    return GatewayError(500, "The gateway had an internal error.", type="server_error", code="internal_error")


def api_endpoint(*methods: str):
    def decorate(handler):
        @functools.wraps(handler)
        async def wrapper(request: ApiRequest):
            try:
                if request.method not in methods:
                    raise GatewayError(405, f"Method {request.method} is not allowed here.", code="method_not_allowed")
                key = await authenticate(request.headers)
                return await handler(request, key)
            except GatewayError as err:
                return error_response(err)
            except Exception:
                log.exception("unhandled error in %s", handler.__name__)
                return error_response(internal_error())

        return wrapper

    return decorate
