"""Incremental parser for the upstream (Anthropic) event stream."""
from __future__ import annotations

from collections.abc import AsyncIterator

import orjson


async def iter_event_batches(byte_chunks: AsyncIterator[bytes]) -> AsyncIterator[list[tuple[str, dict, bytes]]]:
    """Yields the events each read from upstream completes, as (event name, parsed data, the
    event's bytes with its blank line), the moment the read arrives: a caller can forward what
    one read brought in one write (Anthropic often sends several events in one packet).
    Comments and events without data are skipped; `data` that is not JSON is passed
    on as {"raw": text} so an odd event never kills the stream."""
    buffer = b""
    async for chunk in byte_chunks:
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events = []
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end + 2], buffer[end + 2:]
            parsed = _parse_block(block)
            if parsed is not None:
                events.append(parsed)
        if events:
            yield events
    if buffer.strip():
        parsed = _parse_block(buffer + b"\n\n")
        if parsed is not None:
            yield [parsed]


def _parse_block(block: bytes) -> tuple[str, dict, bytes] | None:
    event = ""
    data_lines = []
    for line in block.rstrip(b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    if not data_lines:
        return None
    raw = b"\n".join(data_lines)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = {"raw": raw.decode("utf-8", "replace")}
    if not isinstance(data, dict):
        data = {"raw": data}
    return event or str(data.get("type", "")), data, block
