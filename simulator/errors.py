"""Anthropic-shaped errors: the status table the ``error=`` marker draws from, and the
exception every module raises before the first byte is sent."""
from __future__ import annotations

# status -> (error.type, message); 404 is "model: <model>" (see for_status).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Simulated invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: "),
    409: ("conflict_error", "Simulated conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Simulated rate limit: this request would exceed your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
RETRY_AFTER_STATUSES = frozenset({429, 529})


class SimError(Exception):
    """An Anthropic-shaped error response, raised before any byte is sent."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def for_status(status: int, model: str) -> SimError:
    """The canned error of the ``error=`` marker (and of 413/404 the simulator raises itself)."""
    error_type, message = ERRORS[status]
    return SimError(status, message + model if status == 404 else message, error_type)


def bad(message: str) -> SimError:
    """A 400 ``invalid_request_error``; messages follow the real API's ``field.path: problem``."""
    return SimError(400, message)
