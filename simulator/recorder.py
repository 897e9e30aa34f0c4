"""What reached the simulator, so tests can assert that a gateway forwarded headers and
bodies unchanged: the last ``SIM_RECORDED_REQUESTS`` (default 200) ``/v1/...`` requests in a
ring buffer, served by ``GET /_sim/requests?last=N`` (oldest first).

Secrets are never served: ``x-api-key`` and ``authorization`` show only as present or
not (plus the key's first 3 characters, enough to tell a ``th-`` key from ``sk-``).
Recording keeps the server's header list and the parsed body as they are (no copies) and
shapes them only when asked, so it costs the hot path almost nothing.
"""
from __future__ import annotations

import os
import time
from collections import deque

_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
CAPACITY = max(1, int(os.environ.get("SIM_RECORDED_REQUESTS", "200")))


class Recorded:
    """One request as received; the handlers fill in ``body`` and ``status``."""

    __slots__ = ("request_id", "time", "method", "path", "query", "headers", "body", "status")

    def __init__(self, scope: dict, request_id: bytes) -> None:
        self.request_id = request_id
        self.time = time.time()
        self.method = scope["method"]
        self.path = scope["path"]
        self.query = scope.get("query_string", b"")
        self.headers = scope["headers"]  # the server's own list, kept as is; filtered in as_json
        self.body: object = None
        self.status: int | None = None

    def as_json(self) -> dict:
        headers: dict[str, str] = {}
        api_key = None
        for raw_name, raw_value in self.headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "x-api-key":
                api_key = value
            elif name not in _SECRET_HEADERS:
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return {
            "request_id": self.request_id.decode(),
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "query": self.query.decode("latin-1"),
            "anthropic_version": headers.get("anthropic-version"),
            "anthropic_beta": headers.get("anthropic-beta"),
            "x_api_key": api_key is not None,
            "x_api_key_prefix": api_key[:3] if api_key is not None else None,
            "authorization": any(name.lower() == b"authorization" for name, _ in self.headers),
            "headers": headers,
            "body": self.body,
            "status": self.status,
        }


_log: deque[Recorded] = deque(maxlen=CAPACITY)


def start(scope: dict, request_id: bytes) -> Recorded:
    entry = Recorded(scope, request_id)
    _log.append(entry)
    return entry


def last(count: int) -> list[dict]:
    """The ``count`` most recent requests, oldest first."""
    entries = list(_log)[-count:]
    return [entry.as_json() for entry in entries]
