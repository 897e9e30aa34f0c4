"""A lean ASGI front for the API.

/api/v1 and /v1 are served here, not through Django's request stack: Django runs
its (sync-capable) middleware through thread hops on every request, which costs more
than everything else the gateway does. The portal and admin stay on Django.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from .errors import GatewayError

log = logging.getLogger(__name__)


class Headers(dict):
    """Lower-cased request headers (last value wins, as the API never repeats them)."""

    @classmethod
    def from_scope(cls, scope) -> Headers:
        return cls((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str
    headers: Headers
    query: dict[str, str]
    receive: Callable[[], Awaitable[dict]]
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass(slots=True)
class StreamResponse:
    """Headers are sent, then every chunk of `chunks` as it is produced."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream; charset=utf-8"


Handler = Callable[[ApiRequest], Awaitable["Response | StreamResponse"]]


async def read_body(request: ApiRequest) -> bytes:
    limit = settings.MAX_REQUEST_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "The client closed the connection before the request was complete.",
                               code="client_closed_request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"Request body is larger than the {limit}-byte limit.", code="request_too_large", param=None,
    )


def _header_list(content_type: str, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type.encode())]
    out.extend((k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items())
    return out


async def send_response(send, receive, response: Response | StreamResponse) -> None:
    headers = _header_list(response.content_type, response.headers)
    if isinstance(response, Response):  # a length, not chunked encoding, for a body we already have
        headers.append((b"content-length", b"%d" % len(response.body)))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    if isinstance(response, Response):
        await send({"type": "http.response.body", "body": response.body})
    else:
        await _send_stream(send, receive, response.chunks)


async def _send_stream(send, receive, chunks: AsyncIterator[bytes]) -> None:
    """Forward chunks as they are produced while watching for the client to go away:
    servers drop writes to a closed connection silently, so only `receive()` tells us.
    On disconnect the pump is cancelled at once, which closes the upstream stream."""

    async def pump() -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await chunks.aclose()  # runs the producer's clean-up now, not at garbage collection
        await send({"type": "http.response.body", "body": b""})

    pump_task = asyncio.ensure_future(pump())
    watch_task = asyncio.ensure_future(receive())
    try:
        await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not pump_task.done():
            pump_task.cancel()
        watch_task.cancel()
        await asyncio.gather(pump_task, watch_task, return_exceptions=True)
    if not pump_task.cancelled() and pump_task.exception() is not None:
        raise pump_task.exception()


class Router:
    def __init__(self) -> None:
        self.exact: dict[str, Handler] = {}
        self.prefixed: list[tuple[str, Handler]] = []

    def add(self, path: str, handler: Handler, *, prefix: bool = False) -> None:
        for mount in settings.API_MOUNTS:
            full = mount + path
            if prefix:
                self.prefixed.append((full, handler))
            else:
                self.exact[full] = handler

    def match(self, path: str) -> Handler | None:
        handler = self.exact.get(path) or self.exact.get(path.rstrip("/"))
        if handler is not None:
            return handler
        for prefix, candidate in self.prefixed:
            if path.startswith(prefix):
                return candidate
        return None

    def owns(self, path: str) -> bool:
        return any(path == m or path.startswith(m + "/") for m in settings.API_MOUNTS) or path in self.exact
