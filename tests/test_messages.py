"""POST /v1/messages end to end: the official `anthropic` SDK → the gateway under uvicorn →
the Anthropic simulator. The body and the answer pass through unchanged (model rewritten);
metering, limits and billing are those of every call; errors come in Anthropic's shape."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import anthropic
import httpx
import orjson
import pytest
from asgiref.sync import async_to_sync
from django.db.models import Sum

from billing.models import Charge, RequestRecord
from billing.pricing import compute_cost
from billing.tokens import TokenCounts

from .conftest import _stop, all_priced, start_gateway, wait_until

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def sdk(live, **kwargs) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api_key", live.key)
    return anthropic.Anthropic(base_url=live.url, **kwargs)


def exact_cost(record: RequestRecord) -> Decimal:
    return compute_cost(record.model.prices.order_by("-effective_from").first(), TokenCounts.from_columns(record))


def anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def test_plain_message_passes_through_and_is_billed_exactly(live):
    raw = sdk(live).messages.with_raw_response.create(
        model="anthropic/claude-sonnet-4-6", max_tokens=200, system="Be brief.",
        metadata={"user_id": "user-4711"},
        messages=[{"role": "user", "content": "Hello there [[sim:cache_read=700,cache_write_5m=300,cache_write_1h=100]]"}])
    message = raw.parse()
    generation_id = raw.headers["x-generation-id"]
    assert generation_id.startswith("gen-") and message.id.startswith("msg_")  # upstream's body, unchanged
    assert message.model == "claude-sonnet-4-6"  # the alias was rewritten to the upstream id
    assert message.content[0].text.startswith("Simulated reply to: Hello there")
    record = live.record_of(generation_id)
    assert (record.api, record.status, record.streamed, record.end_user) == ("messages", "success", False, "user-4711")
    usage = message.usage
    assert (record.input_tokens, record.cache_read_tokens, record.cache_write_5m_tokens, record.cache_write_1h_tokens,
            record.output_tokens) == (usage.input_tokens, 700, 300, 100, usage.output_tokens)
    assert record.finish_reason == "end_turn"
    charge = live.charge_of(generation_id)
    assert charge.amount == exact_cost(record) > 0
    info = httpx.get(f"{live.url}/v1/generation", params={"id": generation_id},
                     headers={"x-api-key": live.key}).json()["data"]
    assert info["api"] == "messages" and Decimal(info["total_cost"]) == charge.amount
    key = httpx.get(f"{live.url}/v1/key", headers={"Authorization": f"Bearer {live.key}"}).json()["data"]
    assert Decimal(key["usage"]) == charge.amount


def test_stream_with_tool_use_is_forwarded_event_by_event(live):
    client = sdk(live, auth_token=live.key, api_key=None)  # Claude Code's ANTHROPIC_AUTH_TOKEN: Bearer
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=300, tools=[WEATHER],
                                messages=[{"role": "user", "content": "Weather? [[sim:tool]]"}]) as stream:
        final = stream.get_final_message()
        generation_id = stream.response.headers["x-generation-id"]
    assert final.stop_reason == "tool_use"
    tool = next(block for block in final.content if block.type == "tool_use")
    assert tool.name == "get_weather" and tool.input == {"city": "Paris"}
    record = live.record_of(generation_id)
    assert record.streamed and record.api == "messages" and record.output_tokens == final.usage.output_tokens
    assert live.charge_of(generation_id).amount == exact_cost(record)


def test_raw_sse_bytes_are_the_upstreams(live, simulator_url):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "Bytes [[sim:words=5]]"}]}
    direct = httpx.post(f"{simulator_url}/v1/messages", json=body, headers={"x-api-key": "sk-ant-test"})
    through = httpx.post(f"{live.url}/v1/messages?beta=true", json=body, headers={"x-api-key": live.key})
    assert through.status_code == 200 and through.headers["content-type"].startswith("text/event-stream")

    def shape(text):  # ids differ per request; everything else is byte for byte the same
        return [line if not line.startswith("data: {\"type\":\"message_start\"") else "message_start"
                for line in text.splitlines()]
    assert shape(through.text) == shape(direct.text)


def test_errors_the_gateway_makes_are_anthropic_shaped(live, make_key):
    url = f"{live.url}/v1/messages"
    good = {"model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.AuthenticationError):
        sdk(live, api_key="th-" + "x" * 43).messages.create(**good)
    anthropic_error(httpx.post(url, json=good), 401, "authentication_error")
    hdr = {"x-api-key": live.key}
    anthropic_error(httpx.post(url, content=b"{not json", headers=hdr), 400, "invalid_request_error")
    anthropic_error(httpx.post(url, content=b"[1]", headers=hdr), 400, "invalid_request_error")
    for missing in ("model", "messages", "max_tokens"):
        message = anthropic_error(httpx.post(url, json={k: v for k, v in good.items() if k != missing}, headers=hdr),
                                  400, "invalid_request_error")
        assert missing in message
    anthropic_error(httpx.post(url, json={**good, "messages": "hi"}, headers=hdr), 400, "invalid_request_error")
    anthropic_error(httpx.post(url, json={**good, "stream": "yes"}, headers=hdr), 400, "invalid_request_error")
    message = anthropic_error(httpx.post(url, json={**good, "model": "claude-opus-5-5"}, headers=hdr),
                              404, "not_found_error")
    assert "claude-opus-5-5" in message and "claude-sonnet-4-6" in message and "ANTHROPIC_MODEL" in message
    narrow = make_key("narrow-team", models=["claude-haiku-4-5"]).plaintext
    anthropic_error(httpx.post(url, json=good, headers={"x-api-key": narrow}), 403, "permission_error")
    poor = make_key("poor-team", monthly_limit=Decimal("0.000001")).plaintext
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(live, api_key=poor).messages.create(**good)
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"
    limited = make_key("rpm-team", rpm=1).plaintext
    assert httpx.post(url, json=good, headers={"x-api-key": limited}).status_code == 200
    refused = httpx.post(url, json=good, headers={"x-api-key": limited})
    anthropic_error(refused, 429, "rate_limit_error")
    assert int(refused.headers["retry-after"]) >= 1
    assert RequestRecord.objects.filter(api="messages", status="error", http_status=400).exists()


def test_upstream_errors_pass_through_as_they_came_and_are_not_billed(live):
    raw = httpx.post(f"{live.url}/v1/messages", headers={"x-api-key": live.key}, json={
        "model": "claude-sonnet-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "x [[sim:error=413]]"}]})
    assert raw.status_code == 413 and raw.json()["error"]["type"] == "request_too_large"
    stream = sdk(live).messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                       messages=[{"role": "user", "content": "Hi [[sim:midstream_error]]"}])
    with pytest.raises(anthropic.APIStatusError) as caught, stream as events:
        for _ in events.text_stream:
            pass
    assert caught.value.body["error"]["type"] == "overloaded_error"
    wait_until(lambda: RequestRecord.objects.filter(api="messages", streamed=True, status="error").exists())
    failed = RequestRecord.objects.get(api="messages", streamed=True, status="error")
    assert failed.error_type == "overloaded_error"
    assert live.charge_of(failed.generation_id).amount == 0


def test_client_disconnect_mid_stream_bills_what_was_delivered(live):
    async def read_a_little():
        async with httpx.AsyncClient(timeout=30) as client, client.stream(
                "POST", f"{live.url}/v1/messages", headers={"x-api-key": live.key},
                json={"model": "claude-sonnet-4-6", "max_tokens": 500, "stream": True, "messages": [
                    {"role": "user", "content": "Long [[sim:words=200,chunk_delay_ms=20]]"}]}) as response:
            generation_id = response.headers["x-generation-id"]
            deltas = 0
            async for line in response.aiter_lines():
                deltas += line.startswith("event: content_block_delta")
                if deltas == 5:
                    return generation_id, deltas

    generation_id, deltas = async_to_sync(read_a_little)()
    record = wait_until(lambda: RequestRecord.objects.filter(generation_id=generation_id).first())
    assert record.status == "cancelled" and record.output_estimated and record.api == "messages"
    assert deltas <= record.output_tokens < 200
    assert record.latency_ms < 3000  # upstream was closed at once, not drained (200 words × 20 ms = 4 s)
    assert live.charge_of(generation_id).amount == exact_cost(record) > 0


def test_models_in_anthropics_shape_when_asked_in_anthropics_dialect(live):
    headers = {"x-api-key": live.key, "anthropic-version": "2023-06-01"}
    models = httpx.get(f"{live.url}/v1/models", params={"limit": 1000}, headers=headers).json()
    assert models["has_more"] is False and models["first_id"] == models["data"][0]["id"]
    entry = next(m for m in models["data"] if m["id"] == "claude-sonnet-4-6")
    assert entry["type"] == "model" and entry["display_name"].startswith("Claude") and entry["created_at"].endswith("Z")
    assert httpx.get(f"{live.url}/v1/models/claude-sonnet-4-6", headers=headers).json()["type"] == "model"
    openai_shape = httpx.get(f"{live.url}/v1/models", headers={"x-api-key": live.key}).json()
    assert openai_shape["object"] == "list" and "pricing" in openai_shape["data"][0]
    anthropic_error(httpx.get(f"{live.url}/v1/models", headers={"anthropic-version": "2023-06-01"}),
                    401, "authentication_error")



def test_keepalive_ping_while_upstream_is_silent(transactional_db, seeded, simulator_url, make_key):
    url, proc = start_gateway(simulator_url, STREAM_KEEPALIVE_SECONDS="1")
    try:
        key = make_key("ping-team").plaintext
        response = httpx.post(f"{url}/v1/messages", headers={"x-api-key": key}, timeout=30, json={
            "model": "claude-sonnet-4-6", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "Slow [[sim:words=3,chunk_delay_ms=2300]]"}]})
        events = [line for line in response.text.splitlines() if line.startswith("event: ")]
        assert events[-1] == "event: message_stop"
        # the simulator pings once; every other ping is the gateway's, sent into each silence
        assert events.count("event: ping") >= 6, events
        wait_until(lambda: RequestRecord.objects.filter(api="messages", status="success").exists())
        all_priced()  # before the flush: a TRUNCATE racing the pricing worker's row locks deadlocks
    finally:
        _stop(proc)


def test_spend_limit_holds_under_a_burst_on_two_processes(transactional_db, seeded, gateway_pair, pricing_worker,
                                                           make_key):
    limit = Decimal("0.05")
    issued = make_key("messages-burst", monthly_limit=limit)
    body = {"model": "claude-sonnet-4-6", "max_tokens": 60,
            "messages": [{"role": "user", "content": "burst [[sim:words=55]]"}]}

    async def go():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            return await asyncio.gather(*(client.post(f"{gateway_pair[i % 2]}/v1/messages", json=body,
                                                      headers={"x-api-key": issued.plaintext}) for i in range(200)))

    responses = async_to_sync(go)()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) > 10 and statuses.count(402) > 10 and statuses.count(200) + statuses.count(402) == 200
    assert {orjson.loads(r.content)["error"]["type"] for r in responses if r.status_code == 402} == {"billing_error"}
    wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=60)
    spent = Charge.objects.filter(api_key=issued.api_key).aggregate(total=Sum("amount"))["total"]
    assert 0 < spent <= limit


def test_a_model_row_added_by_an_operator_is_served_at_once(live):
    """A newer model than the seed table (the one Claude Code asks for by default) becomes
    callable in every gateway process as soon as an operator adds its row and price."""
    from datetime import UTC, datetime

    from billing.models import Model, Price

    body = {"model": "claude-opus-5-5", "max_tokens": 20, "messages": [{"role": "user", "content": "new"}]}
    assert httpx.post(f"{live.url}/v1/messages", json=body, headers={"x-api-key": live.key}).status_code == 404
    model = Model.objects.create(public_id="claude-opus-5-5", upstream_id="claude-opus-5-5", tier="Opus 5.5")
    Price.objects.create(model=model, effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                         input_per_mtok=Decimal("5"), output_per_mtok=Decimal("25"))

    def served():
        r = httpx.post(f"{live.url}/v1/messages", json=body, headers={"x-api-key": live.key})
        return r if r.status_code == 200 else None

    generation_id = wait_until(served, timeout=5, interval=0.2).headers["x-generation-id"]
    record = live.record_of(generation_id)
    assert live.charge_of(generation_id).amount == exact_cost(record) > 0


def test_count_tokens_is_forwarded_and_never_billed(live):
    before = RequestRecord.objects.count()
    counted = sdk(live).messages.count_tokens(model="anthropic/claude-sonnet-4-6",
                                              messages=[{"role": "user", "content": "Count me"}])
    assert counted.input_tokens > 0
    assert RequestRecord.objects.count() == before  # never recorded, never billed
