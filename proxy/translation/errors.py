"""Upstream (Anthropic) errors → the OpenAI-shaped errors clients get."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from proxy.errors import GatewayError

# --- upstream errors ------------------------------------------------------------------------

_CREDENTIALS_MESSAGE = ("The gateway's upstream credentials were rejected by Anthropic. This is a gateway "
                        "configuration problem, not a problem with your request or key; contact the operator.")

# Anthropic error type → (our status, OpenAI type, OpenAI code, fixed message; None = upstream's)
_UPSTREAM_ERRORS: dict[str, tuple[int, str, str | None, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None, None),
    "authentication_error": (502, "server_error", "upstream_auth_error", _CREDENTIALS_MESSAGE),
    "permission_error": (502, "server_error", "upstream_auth_error", _CREDENTIALS_MESSAGE),
    "billing_error": (502, "server_error", "upstream_billing_error",
                      "The gateway's upstream Anthropic account has a billing problem; contact the operator."),
    "not_found_error": (404, "invalid_request_error", "model_not_found", None),
    "request_too_large": (413, "invalid_request_error", "request_too_large",
                          "The request is too large for the upstream API (32 MB maximum)."),
    "rate_limit_error": (429, "requests", "rate_limit_exceeded",
                         "Upstream rate limit reached; retry after the delay given in Retry-After."),
    "api_error": (502, "server_error", "upstream_error",
                  "The upstream API failed with an internal error; please retry."),
    "timeout_error": (504, "server_error", "timeout", "The upstream API timed out; please retry."),
    "overloaded_error": (503, "server_error", "overloaded",
                         "Anthropic's API is temporarily overloaded; please retry shortly."),
}
_TYPE_BY_STATUS = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
    504: "timeout_error", 529: "overloaded_error",
}
_NOT_RETRYABLE_TYPES = frozenset({"authentication_error", "permission_error", "billing_error"})
_SPEND_LIMIT_MESSAGE = "The gateway's upstream spend limit is reached; contact the operator."
_MAX_UPSTREAM_MESSAGE = 1_000


def anthropic_error_to_gateway(status: int, body: bytes | str | dict | None, headers: Any = None, *,
                               not_found_hint: str | None = None) -> GatewayError:
    """Map an upstream error response to the OpenAI-shaped error the client gets.

    The HTTP status decides (the body may be an HTML page from a proxy); the body's error
    type only when the status is unknown. Upstream auth/billing failures are the gateway's
    problem: 502 with ``x-should-retry: false``, never blaming the client or echoing a key.
    Retry-After (and retry-after-ms) are copied.
    """
    error_type, message, details = _error_fields(body)
    kind = _TYPE_BY_STATUS.get(status) or (error_type if error_type in _UPSTREAM_ERRORS else None)
    headers_out = _retry_headers(headers)
    if kind is None:
        return GatewayError(502, f"Unexpected upstream error (HTTP {status}).", type="server_error",
                            code="upstream_error", headers=headers_out)
    return _gateway_error(kind, message, details, headers_out, not_found_hint)


def anthropic_stream_error(data: Any) -> GatewayError:
    """Map an in-stream ``error`` event (``{"type":"error","error":{type, message}}``)."""
    error_type, message, details = _error_fields(data)
    return _gateway_error(error_type if error_type in _UPSTREAM_ERRORS else "api_error",
                          message, details, {}, None)


def _gateway_error(kind: str, upstream_message: str | None, details: Mapping, headers: dict[str, str],
                   not_found_hint: str | None) -> GatewayError:
    status, type_, code, message = _UPSTREAM_ERRORS[kind]
    if kind in _NOT_RETRYABLE_TYPES:
        headers["x-should-retry"] = "false"
    if kind == "rate_limit_error" and details.get("error_code") == "enforced_spend_limit_reached":
        message = _SPEND_LIMIT_MESSAGE
        headers["x-should-retry"] = "false"
    if kind == "not_found_error":
        message = "The model was not found upstream" + (f" ({upstream_message})." if upstream_message else ".")
        if not_found_hint:
            message += " " + not_found_hint
    elif message is None:
        message = upstream_message or "The upstream API rejected the request."
    return GatewayError(status, message, type=type_, code=code, headers=headers)


def _error_fields(body: Any) -> tuple[str | None, str | None, Mapping]:
    """(error type, message, details) from an Anthropic error body, tolerating anything."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, None, {}
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, {}
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    details = error.get("details")
    return error_type, message[:_MAX_UPSTREAM_MESSAGE] if message else None, details if isinstance(details, dict) else {}


def _retry_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        return {}
    wanted = {"retry-after", "retry-after-ms"}
    return {name.lower(): value for name, value in headers.items()
            if isinstance(name, str) and name.lower() in wanted and value}
