"""The one shared HTTP client to Anthropic, with bounded retries before the first byte."""
from __future__ import annotations

import asyncio
import logging
import random

import httpx
from django.conf import settings

from .errors import GatewayError

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_RETRY_AFTER = 8.0  # seconds we are willing to wait on one retry; longer goes to the client


class UpstreamHTTPError(Exception):
    """Anthropic answered with an error status before any byte reached the client."""

    def __init__(self, status: int, body: bytes, headers: httpx.Headers) -> None:
        super().__init__(f"upstream status {status}")
        self.status = status
        self.body = body
        self.headers = headers


def _transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx is the client API; underneath, aiohttp's C-accelerated HTTP/1.1 costs a
    fraction of httpcore's CPU per request (see README, Benchmark)."""
    if settings.UPSTREAM_TRANSPORT == "aiohttp":
        from httpx_aiohttp import AiohttpTransport  # aiohttp is imported only when chosen

        return AiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


def _retry_delay(attempt: int, headers: httpx.Headers | None) -> float:
    if headers is not None:
        value = headers.get("retry-after")
        try:
            seconds = float(value) if value is not None else None
        except ValueError:
            seconds = None
        if seconds is not None and 0 <= seconds <= MAX_RETRY_AFTER:
            return seconds
    return min(0.25 * 2**attempt, MAX_RETRY_AFTER) * (1 - 0.25 * random.random())


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _CookielessClient(httpx.AsyncClient):
    """Keeps no cookies: one pool serves every team, so nothing an upstream response sets
    (a CDN's bot cookie, say) may ride along on other teams' calls. It also saves
    httpx's per-response cookie-jar work (about 30 µs a call)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies) -> None:
        pass


_NO_COOKIES = _NoCookies()


class Upstream:
    """The process's connection pool to Anthropic (one per Runtime), opened on first use."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}  # path → absolute URL (merging a relative one costs ~50 µs)

    def client(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30)
            self._urls = {}
            self._client = _CookielessClient(
                base_url=settings.ANTHROPIC_BASE_URL,
                timeout=httpx.Timeout(settings.ANTHROPIC_TIMEOUT),
                transport=_transport(limits),
                headers={
                    "x-api-key": settings.ANTHROPIC_API_KEY or "",
                    "anthropic-version": settings.ANTHROPIC_VERSION,
                    "content-type": "application/json",
                    "user-agent": "tokenhub",
                },
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def open_messages(self, body: bytes, extra_headers: dict[str, str] | None = None,
                            path: str = "/v1/messages") -> httpx.Response:
        """POST /v1/messages (or `path`) and return the response with its body unread (status < 400).

        Transient failures (connection errors, 408/409/429/5xx/529) are retried up to
        ANTHROPIC_MAX_RETRIES times with jittered backoff, honouring a short Retry-After;
        nothing has reached the client yet, so a retry is invisible to it."""
        http = self.client()
        url = self._urls.get(path)
        if url is None:  # what httpx's merge with the base URL (whose path ends with "/") does, once
            base = http.base_url
            url = self._urls[path] = base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode("ascii"))
        attempts = settings.ANTHROPIC_MAX_RETRIES + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            request = http.build_request("POST", url, content=body, headers=extra_headers)
            try:
                response = await http.send(request, stream=True)
            except httpx.TimeoutException:
                if last:
                    raise GatewayError(504, "Timed out connecting to the upstream model provider.",
                                       type="server_error", code="upstream_timeout") from None
                await asyncio.sleep(_retry_delay(attempt, None))
                continue
            except httpx.TransportError as exc:
                if last:
                    raise GatewayError(502, f"Could not reach the upstream model provider ({type(exc).__name__}).",
                                       type="server_error", code="upstream_unreachable") from None
                await asyncio.sleep(_retry_delay(attempt, None))
                continue
            if response.status_code < 400:
                return response
            payload = await response.aread()
            await response.aclose()
            if last or response.status_code not in RETRYABLE_STATUSES:
                raise UpstreamHTTPError(response.status_code, payload, response.headers)
            log.info("upstream %s, retrying (attempt %d)", response.status_code, attempt + 1)
            await asyncio.sleep(_retry_delay(attempt, response.headers))
        raise AssertionError("unreachable")
