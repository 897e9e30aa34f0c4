"""POST /chat/completions end to end: the official openai SDK → the gateway under uvicorn
(two workers) → the Anthropic simulator over HTTP; records and charges checked after."""
import base64
import json
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import Charge, RequestRecord

# A 1×1 PNG.
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)).decode()

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Local time",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}


def user(text):
    return [{"role": "user", "content": text}]


def test_plain_completion_is_metered_and_billed_exactly(live):
    client = live.openai()
    raw = client.chat.completions.with_raw_response.create(
        model="anthropic/claude-sonnet-4-6",
        messages=[{"role": "system", "content": "Be brief."}, *user("Hello there")],
        user="user-4711",
    )
    reply = raw.parse()
    assert raw.headers["x-generation-id"] == reply.id and reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion" and reply.model == "anthropic/claude-sonnet-4-6"
    choice = reply.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert "Simulated reply to: Hello there" in choice.message.content
    usage = reply.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens and usage.completion_tokens > 0
    record = live.record_of(reply.id)
    assert record.status == "success" and not record.streamed and record.end_user == "user-4711"
    assert record.upstream_model == "claude-sonnet-4-6" and record.upstream_request_id.startswith("req_")
    assert record.input_tokens == usage.prompt_tokens and record.output_tokens == usage.completion_tokens
    assert record.latency_ms is not None
    charge = live.charge_of(reply.id)
    expected = (Decimal(record.input_tokens) * 3 + Decimal(record.output_tokens) * 15) / 1_000_000
    assert charge.amount == expected
    assert Decimal(usage.model_extra["cost"]) == charge.amount


def test_cache_tokens_reach_usage_record_and_charge(live):
    reply = live.openai().chat.completions.create(
        model="claude-sonnet-4-6",
        messages=user("Cached [[sim:cache_read=2000,cache_write_5m=300,cache_write_1h=100]]"))
    record = live.record_of(reply.id)
    assert (record.cache_read_tokens, record.cache_write_5m_tokens, record.cache_write_1h_tokens) == (2000, 300, 100)
    assert reply.usage.prompt_tokens == record.input_tokens + 2400
    assert reply.usage.prompt_tokens_details.cached_tokens == 2000
    expected = (Decimal(record.input_tokens) * 3 + Decimal(record.output_tokens) * 15 + 2000 * Decimal("0.3")
                + 300 * Decimal("3.75") + 100 * 6) / 1_000_000
    assert live.charge_of(reply.id).amount == expected


def test_streaming_chunks_accumulate_and_are_billed(live):
    client = live.openai()
    with client.chat.completions.stream(
        model="claude-sonnet-4-6", messages=user("Stream please [[sim:words=40]]"),
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    text = final.choices[0].message.content
    assert len(text.split()) == 40 and final.choices[0].finish_reason == "stop"
    assert final.usage.completion_tokens == 40
    record = live.record_of(final.id)
    assert record.streamed and record.status == "success" and record.ttft_ms is not None
    assert live.charge_of(final.id).amount == Decimal(final.usage.model_extra["cost"])


def test_stream_wire_format_is_bare_data_lines(live):
    with httpx.stream("POST", f"{live.url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": "claude-sonnet-4-6", "stream": True, "messages": user("hi [[sim:words=5]]")},
                      timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        generation_id = response.headers["x-generation-id"]
        body = response.read().decode()
    events = [e for e in body.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), body
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {generation_id}
    assert sum("role" in c["choices"][0]["delta"] for c in chunks) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in chunks)  # no include_usage → no usage keys


def test_tool_call_round_trip(live):
    client = live.openai()
    first = client.chat.completions.create(model="claude-sonnet-4-6", tools=[WEATHER],
                                           messages=user("Weather in Oslo? [[sim:tool]]"))
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    second = client.chat.completions.create(model="claude-sonnet-4-6", tools=[WEATHER], messages=[
        *user("Weather in Oslo?"),
        {"role": "assistant", "content": choice.message.content, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "4 °C"},
    ])
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


def test_parallel_tool_calls_stream_with_separate_indexes(live):
    with live.openai().chat.completions.stream(
        model="claude-sonnet-4-6", tools=[WEATHER, TIME],
        messages=user("Both please [[sim:parallel_tools]]"),
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"timezone": "x"}]
    assert len({c.id for c in calls}) == 2 and final.choices[0].finish_reason == "tool_calls"


def test_parallel_tool_calls_false_yields_one_call(live):
    reply = live.openai().chat.completions.create(
        model="claude-sonnet-4-6", tools=[WEATHER, TIME], parallel_tool_calls=False,
        messages=user("Both please [[sim:parallel_tools]]"))
    assert len(reply.choices[0].message.tool_calls) == 1


def test_vision_data_url_and_http_url(live):
    client = live.openai()
    reply = client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]}])
    assert reply.usage.prompt_tokens > 3200  # the simulator counts 1600 per image
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}])
    assert "image" in err.value.message.lower()


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-haiku-4-5"])  # native vs forced tool
def test_json_mode_returns_json_content(live, model):
    client = live.openai()
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    reply = client.chat.completions.create(
        model=model, messages=user("A person as JSON"),
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    message = reply.choices[0].message
    assert message.tool_calls is None and reply.choices[0].finish_reason == "stop"
    assert set(json.loads(message.content)) >= {"name", "age"}
    obj = client.chat.completions.create(model=model, messages=user("JSON please"),
                                         response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


def test_upstream_429_maps_with_retry_after_and_is_not_billed(live):
    client = live.openai()
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=user("x [[sim:error=429]]"))
    assert err.value.response.headers["retry-after"] == "1"
    generation_id = err.value.response.headers["x-generation-id"]
    record = live.record_of(generation_id)
    assert record.status == "error" and record.http_status == 429
    assert live.charge_of(generation_id).amount == 0


def test_overloaded_maps_to_503(live):
    with pytest.raises(openai.InternalServerError) as err:
        live.openai().chat.completions.create(model="claude-sonnet-4-6", messages=user("x [[sim:error=529]]"))
    assert err.value.status_code == 503 and err.value.code == "overloaded"


def test_transient_failures_are_retried_before_the_first_byte(live):
    reply = live.openai().chat.completions.create(
        model="claude-sonnet-4-6", messages=user("retry me [[sim:fail_first=2,error=529]]"))
    assert reply.choices[0].message.content
    assert live.record_of(reply.id).status == "success"


def test_retired_model_404_names_the_successor(live):
    with pytest.raises(openai.NotFoundError) as err:
        live.openai().chat.completions.create(model="claude-3-5-sonnet-latest", messages=user("x [[sim:error=404]]"))
    assert err.value.code == "model_not_found" and "claude-sonnet-4-6" in err.value.message


def test_unknown_model_and_bad_parameters_are_clear_4xx(live):
    client = live.openai()
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=user("x"))
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=user("x"), temperature=1.5)
    assert err.value.param == "temperature"
    bad_json = httpx.post(f"{live.url}/api/v1/chat/completions", content=b"{not json",
                          headers={"Authorization": f"Bearer {live.key}", "content-type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    assert RequestRecord.objects.filter(api_key=live.issued.api_key, status="error").count() >= 3


def test_oversized_body_gets_413(live):
    huge = b'{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"' + b"a" * (33 * 1024 * 1024) + b'"}]}'
    r = httpx.post(f"{live.url}/api/v1/chat/completions", content=huge, timeout=60,
                   headers={"Authorization": f"Bearer {live.key}", "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_midstream_error_becomes_an_error_event_and_costs_nothing(live):
    client = live.openai()
    stream = client.chat.completions.create(model="claude-sonnet-4-6", stream=True,
                                            messages=user("x [[sim:midstream_error,words=20]]"))
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk)
    assert "overloaded" in str(err.value.body).lower() or "overloaded" in err.value.message.lower()
    generation_id = received[0].id
    record = live.record_of(generation_id)
    assert record.status == "error" and record.streamed
    assert live.charge_of(generation_id).amount == 0


def test_client_disconnect_closes_upstream_and_bills_what_was_delivered(live):
    with httpx.stream("POST", f"{live.url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": "claude-sonnet-4-6", "stream": True,
                            "messages": user("long [[sim:words=400,chunk_delay_ms=20]]")}, timeout=30) as response:
        generation_id = response.headers["x-generation-id"]
        seen = 0
        for line in response.iter_lines():
            if '"content"' in line:
                seen += 1
            if seen >= 5:
                break
    record = live.record_of(generation_id, timeout=15)
    assert record.status == "cancelled" and record.output_estimated
    assert 5 <= record.output_tokens < 400  # billed for what was streamed, not the full answer
    assert record.latency_ms < 8000  # upstream was closed, not drained (400 words × 20 ms = 8 s)
    charge = live.charge_of(generation_id)
    assert charge.amount > 0 and charge.estimated


def test_revoked_key_is_refused_by_every_gateway_process(live, settings):
    if not settings.REDIS_URL:
        pytest.skip("cross-process revocation is pushed through Redis (CI provides it)")
    from tokenhub_portal.accounts.services import revoke_key

    client = live.openai()
    for _ in range(6):  # warm both workers' caches
        client.models.list()
    revoke_key(live.issued.api_key)
    for _ in range(6):
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_failed_requests_are_never_charged(live):
    client = live.openai()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="claude-sonnet-4-6", messages=user("x"), n=3)
    record = RequestRecord.objects.filter(api_key=live.issued.api_key).latest("created")
    assert record.status == "error" and record.http_status == 400
    assert live.charge_of(record.generation_id).amount == 0
    assert not Charge.objects.filter(request__api_key=live.issued.api_key, amount__gt=0).exists()


def test_upstream_reset_mid_stream_ends_with_an_error_event(live):
    stream = live.openai().chat.completions.create(model="claude-sonnet-4-6", stream=True,
                                                   messages=user("x [[sim:drop,words=20]]"))
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk)
    assert err.value.code == "upstream_stream_truncated"
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)  # what came, came
    record = live.record_of(received[0].id)
    assert record.status == "error" and record.error_type == "upstream_stream_truncated"
    assert live.charge_of(received[0].id).amount == 0


@pytest.fixture(scope="module")
def impatient_gateway(django_db_setup, simulator_url):
    """A gateway that waits at most 1 s for upstream bytes and does not retry."""
    from .conftest import _stop, start_gateway

    url, proc = start_gateway(simulator_url, ANTHROPIC_TIMEOUT="1", ANTHROPIC_MAX_RETRIES="0")
    yield url
    _stop(proc)


def test_upstream_timeouts_before_and_during_the_stream(live, impatient_gateway):
    client = openai.OpenAI(base_url=f"{impatient_gateway}/api/v1", api_key=live.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=user("slow [[sim:delay_ms=2500]]"))
    assert err.value.status_code == 504 and err.value.code == "upstream_timeout"
    assert live.record_of(err.value.response.headers["x-generation-id"]).http_status == 504
    stream = client.chat.completions.create(model="claude-sonnet-4-6", stream=True,
                                            messages=user("stalls [[sim:words=5,chunk_delay_ms=2500]]"))
    with pytest.raises(openai.APIError) as err:
        for _ in stream:
            pass
    assert err.value.code == "upstream_stream_error"


def test_metrics_are_summed_across_workers_and_need_a_token(live):
    from .conftest import METRICS_TOKEN

    client = live.openai()
    for _ in range(4):  # spread over both uvicorn workers
        client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=user("metrics"))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=user("x"))
    assert httpx.get(f"{live.url}/metrics").status_code == 403
    assert httpx.get(f"{live.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    text = httpx.get(f"{live.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text

    def sample(name, **labels):
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name}{{{wanted}}} not exported")

    assert sample("tokenhub_requests_total", model="claude-haiku-4-5", status="success") >= 4
    assert sample("tokenhub_errors_total", model="unknown", error="model_not_found") >= 1
    assert sample("tokenhub_tokens_total", model="claude-haiku-4-5", kind="output") > 0
    assert sample("tokenhub_cost_usd_total", model="claude-haiku-4-5") > 0
    assert sample("tokenhub_request_seconds_count", model="claude-haiku-4-5", streamed="false") >= 4
    assert "no-such-model" not in text  # client input never becomes a label


def test_nul_characters_are_refused_and_cannot_spoil_other_records(live):
    """PostgreSQL cannot store NUL; a request carrying one must neither 500 nor take the
    batch of records it shares with other requests down with it."""
    key = {"Authorization": f"Bearer {live.key}"}
    for body in ({"model": "x\u0000y", "messages": user("hi")},
                 {"model": "claude-sonnet-4-6", "messages": user("hi"), "user": "u\u0000"},
                 {"model": "claude-sonnet-4-6", "messages": user("h\u0000i"), "stream": True}):
        r = httpx.post(f"{live.url}/api/v1/chat/completions", json=body, headers=key)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_value"
        assert live.record_of(r.headers["x-generation-id"]).http_status == 400
    literal = live.openai().chat.completions.create(model="claude-sonnet-4-6", messages=user("a \\u0000 b"))
    assert literal.choices[0].message.content  # a backslash-u text is not a NUL
    assert httpx.get(f"{live.url}/api/v1/generation", params={"id": "chatcmpl-\u0000"}, headers=key).status_code == 404


def test_one_unstorable_record_does_not_fail_its_batch(db):
    """The writer falls back to row-by-row when a batch INSERT fails."""
    import asyncio

    from proxy.recorder import RecordWriter

    writer = RecordWriter()
    stored, failed = [], []

    async def store(batch):
        if len(batch) > 1 and any(f["bad"] for f in batch):
            raise ValueError("batch rejected")
        if batch[0]["bad"]:
            raise ValueError("row rejected")
        stored.extend(f["n"] for f in batch)

    writer._store = store

    async def scenario():
        async def one(n, bad=False):
            try:
                await writer.write({"n": n, "bad": bad, "generation_id": f"g{n}"})
            except ValueError:
                failed.append(n)

        await asyncio.gather(*(one(n, bad=n == 2) for n in range(5)))

    from asgiref.sync import async_to_sync

    async_to_sync(scenario)()
    assert sorted(stored) == [0, 1, 3, 4] and failed == [2]


def test_a_new_price_version_applies_at_once_in_every_process(live, settings):
    if not settings.REDIS_URL:
        pytest.skip("catalog changes are pushed through Redis (CI provides it)")
    from django.utils import timezone

    from billing.models import Model, Price

    client = live.openai()
    for _ in range(4):  # both workers have the catalog cached
        client.chat.completions.create(model="claude-haiku-4-5", messages=user("warm"))
    Price.objects.create(model=Model.objects.get(public_id="claude-haiku-4-5"), effective_from=timezone.now(),
                         input_per_mtok=Decimal("100"), output_per_mtok=Decimal("1000"))
    for _ in range(4):
        reply = client.chat.completions.create(model="claude-haiku-4-5", messages=user("after"))
        usage = reply.usage
        expected = (Decimal(usage.prompt_tokens) * 100 + Decimal(usage.completion_tokens) * 1000) / 1_000_000
        assert Decimal(usage.model_extra["cost"]) == expected
        assert live.charge_of(reply.id).amount == expected
