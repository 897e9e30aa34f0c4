"""Errors in Anthropic's own shape, for clients of the native Messages API (Claude Code and
the Anthropic SDKs map ``{"type": "error", "error": {"type", "message"}}`` and the status to
their exception classes; a 402 is final for Claude Code, a 401 is retried)."""
from __future__ import annotations

import orjson

from proxy.asgi import Response
from proxy.errors import GatewayError

_TYPE_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error",
    499: "invalid_request_error", 500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error",
    529: "overloaded_error",
}


class UpstreamAnswer(GatewayError):
    """An upstream error passed to the client as it came: status, body and retry headers."""

    def __init__(self, status: int, body: bytes, headers) -> None:
        kept = {name: headers[name] for name in ("retry-after", "request-id", "x-should-retry") if name in headers}
        super().__init__(status, _message_of(body), type=_type_of(body, status), code=_type_of(body, status),
                         headers=kept)
        self.raw = body if _fields(body) else None  # not Anthropic's JSON (a proxy's page): ours instead


def error_type(status: int) -> str:
    return _TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(err: GatewayError) -> bytes:
    if isinstance(err, UpstreamAnswer) and err.raw is not None:
        return err.raw
    return orjson.dumps({"type": "error", "error": {"type": error_type(err.status), "message": err.message}})


def anthropic_error_response(err: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return Response(err.status, error_body(err), {**err.headers, **(headers or {})})


def anthropic_error_event(err: GatewayError) -> bytes:
    """A mid-stream error as Anthropic sends it (the SDKs raise on it)."""
    return b"event: error\ndata: " + error_body(err) + b"\n\n"


def _fields(body: bytes) -> dict:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _type_of(body: bytes, status: int) -> str:
    kind = _fields(body).get("type")
    return kind if isinstance(kind, str) else error_type(status)


def _message_of(body: bytes) -> str:
    message = _fields(body).get("message")
    return message[:2000] if isinstance(message, str) else "The upstream API returned an error."
