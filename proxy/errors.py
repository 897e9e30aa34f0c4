"""The one exception type the gateway raises for anything a client should see.

Every error leaves the gateway in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` so the official SDKs map it to the
right exception class.
"""
from __future__ import annotations

import orjson


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.body())


def invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> GatewayError:
    """A 400 naming the offending field."""
    return GatewayError(400, message, param=param, code=code)
