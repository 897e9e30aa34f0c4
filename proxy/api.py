"""The decorator every /api/v1 handler goes through: method check, key auth (and its
scope: management keys are refused unless the handler calls no model), OpenAI-shaped
errors (never a bare 500)."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import orjson

from .asgi import ApiRequest, Response
from .auth import authenticate
from .errors import GatewayError
from .runtime import current

log = logging.getLogger(__name__)


def json_response(data, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(data), headers or {})


def error_response(err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return Response(err.status, err.json_bytes(), {**err.headers, **(headers or {})})


openai_error_response = error_response
ErrorShape = Callable[[GatewayError], Response]


def internal_error() -> GatewayError:
    return GatewayError(500, "The gateway had an internal error.", type="server_error", code="internal_error")


def parse_json_object(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
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


def api_endpoint(*methods: str, errors: Callable[[ApiRequest], ErrorShape] | None = None, management: bool = False):
    """`errors` picks the error shape per request (default: OpenAI's). `management`:
    management keys may call this handler too (it reads, never calls a model). Off by
    default, so every model-calling endpoint refuses them."""

    def decorate(handler):
        @functools.wraps(handler)
        async def wrapper(request: ApiRequest):
            error_response = errors(request) if errors is not None else openai_error_response
            try:
                if request.method not in methods:
                    raise GatewayError(405, f"Method {request.method} is not allowed here.", code="method_not_allowed")
                key = await authenticate(current().keys, request.headers, management=management)
                return await handler(request, key)
            except GatewayError as err:
                return error_response(err)
            except Exception:
                log.exception("unhandled error in %s", handler.__name__)
                return error_response(internal_error())

        return wrapper

    return decorate
