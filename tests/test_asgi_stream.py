"""proxy.asgi's streamed responses: keepalive pings into silences, nothing after the end,
upstream closed when the client goes away (in-process, no Django)."""
from __future__ import annotations

import asyncio

from proxy.asgi import StreamResponse, send_response

PING = b"event: ping\ndata: {}\n\n"


LEFT = b"(the client left)"


def run(chunks, *, keepalive=0.05, client_leaves_after: float | None = None) -> list[bytes | None]:
    """What reached the client: each body part, None for the end of the response, LEFT where
    the client went away. Bounds are loose on purpose: a busy machine delays timers."""
    sent: list[bytes | None] = []

    async def scenario() -> None:
        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                sent.append(message["body"] if message.get("more_body") else None)

        async def receive() -> dict:
            await asyncio.sleep(3600 if client_leaves_after is None else client_leaves_after)
            sent.append(LEFT)
            return {"type": "http.disconnect"}

        response = StreamResponse(200, chunks(), keepalive=(PING, keepalive) if keepalive else None)
        await send_response(send, receive, response)
        await asyncio.sleep(keepalive * 4 if keepalive else 0)  # a ping due after the end would show now

    asyncio.run(scenario())
    return sent


def test_a_silence_longer_than_the_keepalive_gets_pings_and_nothing_follows_the_end():
    async def chunks():
        yield b"a"
        await asyncio.sleep(0.3)  # six keepalive periods
        yield b"b"

    sent = run(chunks)
    assert sent[0] == b"a" and sent[-2:] == [b"b", None]  # and no ping after the end
    assert set(sent[1:-2]) == {PING}, sent


def test_a_stream_that_keeps_talking_gets_no_ping():
    async def chunks():
        for n in range(8):
            await asyncio.sleep(0.02)  # a tenth of the keepalive period each time, 0.16 s in all
            yield b"%d" % n

    assert run(chunks, keepalive=0.2) == [b"%d" % n for n in range(8)] + [None]


def test_without_a_keepalive_silence_stays_silent():
    async def chunks():
        yield b"a"
        await asyncio.sleep(0.12)
        yield b"b"

    assert run(chunks, keepalive=0) == [b"a", b"b", None]


def test_a_client_leaving_closes_the_producer_and_stops_the_pings():
    closed = []

    async def chunks():
        try:
            yield b"a"
            await asyncio.sleep(3600)
            yield b"never"
        finally:
            closed.append(True)

    sent = run(chunks, client_leaves_after=0.3)
    assert closed == [True] and sent[0] == b"a" and sent[-1] == LEFT, sent  # no ping, no end after it
    assert set(sent[1:-1]) == {PING}, sent
