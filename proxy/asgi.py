"""A lean ASGI front for the API.

/api/v1 and /v1 are served here, not through Django's request stack: Django runs
its (sync-capable) middleware through thread hops on every request, which costs more
than everything else the gateway does. The portal and admin stay on Django.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
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
    """Headers are sent, then every chunk of `chunks` as it is produced. With `keepalive`
    (bytes, seconds), those bytes go out whenever nothing did for that long."""

    status: int
    chunks: AsyncGenerator[bytes, None]
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream; charset=utf-8"
    keepalive: tuple[bytes, float] | None = None


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
        await _send_stream(send, receive, response.chunks, response.keepalive)


async def _send_stream(send, receive, chunks: AsyncGenerator[bytes, None], keepalive: tuple[bytes, float] | None) -> None:
    """Forward chunks as they are produced while watching for the client to go away:
    servers drop writes to a closed connection silently, so only `receive()` tells us.
    On disconnect the pump is cancelled at once, which closes the upstream stream."""
    pings = _Pings(send, *keepalive) if keepalive is not None else None

    async def pump() -> None:
        try:
            async for chunk in chunks:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if pings is not None:
                        pings.sent()
        finally:
            await chunks.aclose()  # runs the producer's clean-up now, not at garbage collection
        if pings is not None:
            await pings.stop()  # no ping after the end
        await send({"type": "http.response.body", "body": b""})

    tasks = {pump_task := asyncio.ensure_future(pump()), asyncio.ensure_future(receive())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if task is not pump_task or not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pings is not None:
            await pings.stop()
    error = None if pump_task.cancelled() else pump_task.exception()
    if error is not None:
        raise error


class _Pings:
    """Sends `ping` whenever the stream was silent for `seconds` (clients such as Claude Code
    give up on a silent connection while the model thinks). A timer, re-armed when it finds
    the stream was not silent: a task only when a ping is due, which most streams never
    reach (a task per stream was a share of a stream's CPU)."""

    __slots__ = ("_send", "_ping", "_seconds", "_loop", "_last_sent", "_timer", "_sending")

    def __init__(self, send, ping: bytes, seconds: float) -> None:
        self._send, self._ping, self._seconds = send, ping, seconds
        self._loop = asyncio.get_running_loop()
        self._last_sent = self._loop.time()
        self._sending: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(seconds, self._due)

    def sent(self) -> None:
        self._last_sent = self._loop.time()

    def _due(self) -> None:
        wait = self._last_sent + self._seconds - self._loop.time()
        if wait > 0:
            self._timer = self._loop.call_later(wait, self._due)
        else:
            self._timer = None
            self._sending = self._loop.create_task(self._send_ping())

    async def _send_ping(self) -> None:
        await self._send({"type": "http.response.body", "body": self._ping, "more_body": True})
        self._last_sent = self._loop.time()
        self._timer = self._loop.call_later(self._seconds, self._due)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sending, self._sending = self._sending, None
        if sending is not None and not sending.done():  # cancelled at its one await: it re-arms nothing
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)


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
