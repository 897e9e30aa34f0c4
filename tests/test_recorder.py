"""The record writer and the pipeline's writes to the client, in-process (its spool for
database outages is in test_spool.py)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from asgiref.sync import async_to_sync
from django.utils import timezone

from billing.models import RequestRecord
from proxy import runtime
from tokenhub_portal.asgi import application


def test_events_that_arrive_together_leave_in_one_write(
        transactional_db, seeded, make_key, fresh_writer, monkeypatch, settings):
    """Upstream often packs several SSE events in one read: the gateway forwards what one read
    brought in one write to the client (not one per event), and still ends the stream only after
    the record is committed."""
    from proxy import upstream

    recorded = json.loads((Path(__file__).parent / "fixtures" / "anthropic" / "text_stream.json").read_text())
    sse = b"".join(f"event: {e}\ndata: {json.dumps(d)}\n\n".encode() for e, d in recorded["events"])
    half = sse.index(b"event: content_block_delta") + 1  # two reads: the opening events, then the rest
    reads = [sse[:half - 1], sse[half - 1:]]

    class TwoReads(httpx.AsyncByteStream):
        async def __aiter__(self):
            for chunk in reads:
                yield chunk

    monkeypatch.setattr(upstream, "_transport", lambda limits: httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=TwoReads())))
    settings.ANTHROPIC_BASE_URL = "http://upstream.test"
    key = make_key("coalesced").plaintext
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()

    async def call() -> list[bytes]:
        scope = {"type": "http", "method": "POST", "path": "/v1/messages", "raw_path": b"/v1/messages",
                 "query_string": b"", "headers": [(b"x-api-key", key.encode()), (b"anthropic-version", b"2023-06-01"),
                                                   (b"content-type", b"application/json")],
                 "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
                 "root_path": "", "asgi": {"version": "3.0"}}
        received = False
        writes: list[bytes] = []
        headers: dict[bytes, bytes] = {}

        async def receive():
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(60)

        async def send(message):
            if message["type"] == "http.response.start":
                headers.update(message["headers"])
            elif message.get("body"):
                writes.append(message["body"])

        await application(scope, receive, send)
        await runtime.current().upstream.close()
        return writes, headers[b"x-generation-id"].decode()

    writes, generation_id = async_to_sync(call)()
    assert b"".join(writes) == sse  # the native Messages API passes the events on unchanged
    # the first read; the second read up to message_stop (sent before the record commit);
    # message_stop itself once the record is committed
    assert writes == [reads[0], reads[1][:reads[1].index(b"event: message_stop")],
                      reads[1][reads[1].index(b"event: message_stop"):]]
    assert RequestRecord.objects.get(generation_id=generation_id).status == "success"


def test_the_record_insert_fills_missing_columns_with_the_models_defaults():
    """The writer precomputes column defaults (Field.get_default per row was slow): same values."""
    from billing.models import StoredResponse
    from proxy.recorder import _Rows

    for model, unique in ((RequestRecord, "generation_id"), (StoredResponse, "response_id")):
        rows = _Rows(model, unique)
        expected = [f.get_default() for f in rows.fields]
        assert rows.values([{}]) == expected, model


def test_json_columns_are_stored_as_json(transactional_db, seeded, make_key, fresh_writer):
    """The writer sends JSON values as untyped text; PostgreSQL stores them as the column's jsonb
    (the STORE_CONTENT prompt here; stored responses take the same path)."""
    key = make_key("json").api_key
    prompt = [{"role": "user", "content": [{"type": "text", "text": "héllo \"quoted\" \\ back"}]}]
    async_to_sync(fresh_writer.write)(dict(
        generation_id="gen-json", api="messages", api_key_id=key.id, team_id=key.team_id, requested_model="m",
        status="success", http_status=200, created=timezone.now(), prompt=prompt))
    assert RequestRecord.objects.get(generation_id="gen-json").prompt == prompt
    assert RequestRecord.objects.filter(generation_id="gen-json", prompt__0__role="user").exists()
