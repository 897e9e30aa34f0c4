"""POST /v1/responses end to end: the official openai SDK → the gateway under uvicorn (two
workers) → the Anthropic simulator; records, charges, stored responses checked after."""
import json
from decimal import Decimal

import httpx
import openai
import pytest

from billing.models import RequestRecord, StoredResponse
from proxy.translation.reasoning import decode_thinking, encode_thinking

MODEL = "claude-sonnet-4-6"
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False}}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
    {"type": "function", "name": "close_agent", "description": "Close an agent.", "strict": False,
     "parameters": {"type": "object", "properties": {"target": {"type": "string"}}, "required": ["target"]}}]}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files (FREEFORM).",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}


def sonnet_cost(record) -> Decimal:
    return (Decimal(record.input_tokens) * 3 + Decimal(record.output_tokens) * 15 + record.cache_read_tokens
            * Decimal("0.3") + record.cache_write_5m_tokens * Decimal("3.75") + record.cache_write_1h_tokens * 6) \
        / 1_000_000


def post(live, key=None, **body):
    return httpx.post(f"{live.url}/v1/responses", json={"model": MODEL, **body}, timeout=30,
                      headers={"Authorization": f"Bearer {key or live.key}"})


def test_create_is_metered_billed_exactly_and_visible_in_generation_and_key(live):
    client = live.openai()
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="Hello there [[sim:cache_read=2000,cache_write_5m=300]]", instructions="Be brief.",
        user="user-4711", metadata={"run": "7"})
    reply = raw.parse()
    assert raw.headers["x-generation-id"] == reply.id and reply.id.startswith("resp_")
    assert reply.object == "response" and reply.status == "completed" and reply.model == MODEL
    assert reply.output_text.startswith("Simulated reply to: Hello there")
    assert reply.instructions == "Be brief." and reply.metadata == {"run": "7"} and reply.store is True
    usage = reply.usage
    assert usage.input_tokens_details.cached_tokens == 2000 and usage.input_tokens_details.cache_write_tokens == 300
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0

    record = live.record_of(reply.id)
    assert record.api == "responses" and record.status == "success" and not record.streamed
    assert record.end_user == "user-4711" and record.finish_reason == "stop"
    assert record.input_tokens + 2300 == usage.input_tokens and record.output_tokens == usage.output_tokens
    charge = live.charge_of(reply.id)
    assert charge.amount == sonnet_cost(record) and Decimal(usage.model_extra["cost"]) == charge.amount

    generation = httpx.get(f"{live.url}/api/v1/generation", params={"id": reply.id},
                           headers={"Authorization": f"Bearer {live.key}"}).json()["data"]
    assert generation["id"] == reply.id and Decimal(generation["total_cost"]) == charge.amount
    key = httpx.get(f"{live.url}/api/v1/key", headers={"Authorization": f"Bearer {live.key}"}).json()["data"]
    assert Decimal(key["usage"]) == charge.amount


def test_stream_helper_gets_the_final_response_and_the_stream_is_billed(live):
    client = live.openai()
    with client.responses.stream(model=MODEL, input="Stream please [[sim:words=20]]") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 20
    assert len(final.output_text.split()) == 20 and final.usage.output_tokens == 20
    record = live.record_of(final.id)
    assert record.api == "responses" and record.streamed and record.status == "success"
    assert live.charge_of(final.id).amount == sonnet_cost(record) == Decimal(final.usage.model_extra["cost"])


def test_stored_response_retrieve_input_items_and_delete(live):
    client = live.openai()
    reply = client.responses.create(model=MODEL, input=[
        {"role": "developer", "content": "Answer tersely."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "First"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Second"}]}])
    got = client.responses.retrieve(reply.id)
    assert got.id == reply.id and got.output_text == reply.output_text and got.usage.total_tokens == reply.usage.total_tokens
    items = client.responses.input_items.list(reply.id)
    assert [item.content[0].text for item in items.data] == ["Second", "First", "Answer tersely."]  # newest first
    ascending = client.responses.input_items.list(reply.id, order="asc", limit=2)
    assert [item.role for item in ascending.data] == ["developer", "user"] and ascending.has_more
    rest = client.responses.input_items.list(reply.id, order="asc", after=ascending.data[-1].id)
    assert [item.content[0].text for item in rest.data] == ["Second"] and not rest.has_more
    assert client.responses.delete(reply.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(reply.id)


def test_store_false_is_not_kept(live):
    client = live.openai()
    reply = client.responses.create(model=MODEL, input="ephemeral", store=False)
    assert reply.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)
    assert not StoredResponse.objects.filter(response_id=reply.id).exists()


def test_function_tool_round_trip_with_previous_response_id(live):
    client = live.openai()
    first = client.responses.create(model=MODEL, input="Weather in Paris? [[sim:tool]]", tools=[WEATHER])
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.status == "completed"
    assert live.record_of(first.id).finish_reason == "tool_calls"
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=[WEATHER], input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny in Paris"}])
    assert second.previous_response_id == first.id
    assert second.output_text.startswith("Simulated reply to: sunny in Paris")  # the result reached upstream
    fresh = client.responses.create(model=MODEL, input="sunny in Paris", tools=[WEATHER])
    assert second.usage.input_tokens > fresh.usage.input_tokens + 5  # the stored conversation went along
    # the same loop without storage: the client sends the whole history back, ids and all
    stateless = client.responses.create(model=MODEL, store=False, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny in Paris"}])
    assert stateless.output_text.startswith("Simulated reply to: sunny in Paris")


def test_reasoning_round_trip_keeps_thinking_on_in_a_tool_loop(live):
    """Thinking comes back as a reasoning item; sent back (as Codex does, stateless) or continued
    with previous_response_id, it reaches upstream as the signed thinking block the simulator
    verifies, as Anthropic does. A changed thinking text fails upstream's signature check."""
    client = live.openai()
    reasoning = {"effort": "low", "summary": "auto"}
    first = client.responses.create(model=MODEL, input="Weather in Paris? [[sim:tool,redacted_thinking]]",
                                    tools=[WEATHER], reasoning=reasoning, include=["reasoning.encrypted_content"])
    kinds = [item.type for item in first.output]
    assert kinds == ["reasoning", "message", "function_call"]
    thought = first.output[0]
    assert thought.summary[0].text and thought.encrypted_content.startswith("thb1.")
    assert first.usage.output_tokens_details.reasoning_tokens > 0
    call = first.output[2]
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    history = [{"role": "user", "content": "Weather in Paris?"}, *[i.model_dump(exclude_none=True) for i in first.output],
               result]

    stateless = client.responses.create(model=MODEL, store=False, tools=[WEATHER], reasoning=reasoning, input=history)
    assert stateless.status == "completed" and stateless.output_text.startswith("Simulated reply to: sunny")
    assert stateless.output[0].type == "reasoning"  # thinking stayed on for the tool loop
    continued = client.responses.create(model=MODEL, previous_response_id=first.id, tools=[WEATHER],
                                        reasoning=reasoning, input=[result])
    assert continued.status == "completed" and continued.output[0].type == "reasoning"
    assert client.responses.create(model=MODEL, store=False, tools=[WEATHER], input=history).status == "completed"

    blocks = decode_thinking(thought.encrypted_content, "x")
    blocks[0]["thinking"] += " (edited)"
    tampered = [{**item, "encrypted_content": encode_thinking(blocks)} if item.get("type") == "reasoning" else item
                for item in history]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, store=False, tools=[WEATHER], reasoning=reasoning, input=tampered)
    assert "signature" in err.value.message


def test_prompt_caching_writes_then_reads_and_bills_both(live):
    client = live.openai()
    rules = "Follow the house rules. " * 600  # above the model's minimum cacheable prompt

    def ask():
        return client.responses.create(model=MODEL, instructions=rules, input="What now?", store=False,
                                       extra_body={"cache_control": {"type": "ephemeral"}})

    first, second = ask(), ask()
    assert first.usage.input_tokens_details.cache_write_tokens > 1000
    assert second.usage.input_tokens_details.cached_tokens == first.usage.input_tokens_details.cache_write_tokens
    for reply in (first, second):
        record = live.record_of(reply.id)
        assert live.charge_of(reply.id).amount == sonnet_cost(record) == Decimal(reply.usage.model_extra["cost"])


def test_another_team_cannot_read_list_delete_or_continue_a_stored_response(live, make_key):
    reply = live.openai().responses.create(model=MODEL, input="team secret")
    other = openai.OpenAI(base_url=f"{live.url}/v1", api_key=make_key("other-team").plaintext, max_retries=0)
    for attempt in (lambda: other.responses.retrieve(reply.id), lambda: other.responses.input_items.list(reply.id),
                    lambda: other.responses.delete(reply.id)):
        with pytest.raises(openai.NotFoundError):
            attempt()
    with pytest.raises(openai.NotFoundError) as err:
        other.responses.create(model=MODEL, input="continue", previous_response_id=reply.id)
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"
    assert live.openai().responses.retrieve(reply.id).output_text == reply.output_text  # still there for its team


def test_namespace_and_custom_tool_calls_come_back_as_the_client_offered_them(live):
    namespaced = post(live, input="close it [[sim:tool]]", tools=[NAMESPACE, WEATHER]).json()
    (call,) = namespaced["output"][1:]
    assert (call["type"], call["name"], call["namespace"]) == ("function_call", "close_agent", "multi_agent_v1")
    assert json.loads(call["arguments"]) == {"target": "x"}
    custom = post(live, input="patch it [[sim:tool]]", tools=[APPLY_PATCH]).json()
    (patch,) = custom["output"][1:]
    assert (patch["type"], patch["name"], patch["input"]) == ("custom_tool_call", "apply_patch", "x")
    follow = post(live, store=False, tools=[APPLY_PATCH], input=[
        {"role": "user", "content": "patch it"}, patch,
        {"type": "custom_tool_call_output", "call_id": patch["call_id"], "output": "Exit code: 0"}]).json()
    assert follow["output"][0]["content"][0]["text"].startswith("Simulated reply to: Exit code: 0")


def test_hosted_tools_offered_are_named_in_a_header_and_forcing_one_is_a_400(live):
    response = post(live, input="hi", tools=[{"type": "web_search", "external_web_access": False}, WEATHER])
    assert response.status_code == 200 and response.headers["x-tokenhub-ignored-tools"] == "web_search"
    with httpx.stream("POST", f"{live.url}/v1/responses", timeout=30, headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": MODEL, "input": "hi", "stream": True, "tools": [{"type": "web_search"}]}) as r:
        assert r.headers["x-tokenhub-ignored-tools"] == "web_search"
        r.read()
    forced = post(live, input="hi", tools=[{"type": "web_search"}], tool_choice={"type": "web_search"})
    assert forced.status_code == 400
    assert forced.json()["error"]["param"] == "tool_choice" and "web_search" in forced.json()["error"]["message"]


def test_bad_input_is_a_400_naming_the_field(live):
    client = live.openai()
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="x", temperature=1.7)
    assert err.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input=[{"type": "message", "role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}]}])
    assert err.value.param == "input[0].content[0].image_url"
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="gpt-4o", input="x")
    assert err.value.code == "model_not_found"
    assert post(live, input="x", conversation="conv_1").json()["error"]["param"] == "conversation"


def test_max_output_tokens_ends_incomplete_and_is_billed(live):
    reply = live.openai().responses.create(model=MODEL, input="long [[sim:words=50]]", max_output_tokens=5)
    assert reply.status == "incomplete" and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage.output_tokens == 5
    record = live.record_of(reply.id)
    assert record.finish_reason == "length" and live.charge_of(reply.id).amount == sonnet_cost(record) > 0


def test_midstream_error_ends_in_response_failed_and_costs_nothing(live):
    with httpx.stream("POST", f"{live.url}/v1/responses", timeout=30, headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": MODEL, "stream": True, "input": "x [[sim:midstream_error,words=20]]"}) as r:
        generation_id = r.headers["x-generation-id"]
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "response.failed"
    assert sum(e["type"] == "response.output_text.delta" for e in events) == 2
    failed = events[-1]["response"]
    assert failed["id"] == generation_id and failed["status"] == "failed" and failed["error"]["code"] == "overloaded"
    record = live.record_of(generation_id)
    assert record.status == "error" and record.api == "responses"
    assert live.charge_of(generation_id).amount == 0
    assert not StoredResponse.objects.filter(response_id=generation_id).exists()


def test_client_disconnect_bills_what_was_delivered(live):
    with httpx.stream("POST", f"{live.url}/v1/responses", timeout=30, headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": MODEL, "stream": True,
                            "input": "long [[sim:words=400,chunk_delay_ms=20]]"}) as response:
        generation_id = response.headers["x-generation-id"]
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith('data: {"type":"response.output_text.delta"')
            if seen >= 5:
                break
    record = live.record_of(generation_id, timeout=15)
    assert record.status == "cancelled" and record.output_estimated and record.api == "responses"
    assert 5 <= record.output_tokens < 400
    charge = live.charge_of(generation_id)
    assert charge.amount == sonnet_cost(record) > 0 and charge.estimated


def test_v1_and_api_v1_mounts_and_unknown_subpaths(live):
    assert post(live, input="x").status_code == 200
    r = httpx.post(f"{live.url}/api/v1/responses", json={"model": MODEL, "input": "x"},
                   headers={"Authorization": f"Bearer {live.key}"}, timeout=30)
    assert r.status_code == 200 and RequestRecord.objects.get(generation_id=r.json()["id"]).api == "responses"
    other = httpx.get(f"{live.url}/v1/responses/{r.json()['id']}/nothing", headers={"Authorization": f"Bearer {live.key}"})
    assert other.status_code == 404 and set(other.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{live.url}/v1/responses/{r.json()['id']}").status_code == 401


@pytest.fixture(scope="module")
def storeless_gateway(django_db_setup, simulator_url):
    """A gateway with RESPONSES_STORE=0 and a 1-second stream keep-alive."""
    from .conftest import _stop, start_gateway

    url, proc = start_gateway(simulator_url, RESPONSES_STORE="0", STREAM_KEEPALIVE_SECONDS="1")
    yield url
    _stop(proc)


def test_responses_store_off_keeps_nothing_and_refuses_previous_response_id(live, storeless_gateway):
    client = openai.OpenAI(base_url=f"{storeless_gateway}/v1", api_key=live.key, max_retries=0)
    reply = client.responses.create(model=MODEL, input="hi")
    assert reply.store is False and not StoredResponse.objects.filter(response_id=reply.id).exists()
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, input="again", previous_response_id=reply.id)
    assert err.value.param == "previous_response_id" and "RESPONSES_STORE" in err.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(reply.id)


def test_keepalive_comments_fill_upstream_silence_and_clients_skip_them(live, storeless_gateway):
    with httpx.stream("POST", f"{storeless_gateway}/v1/responses", timeout=30,
                      headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": MODEL, "stream": True, "input": "slow [[sim:words=2,chunk_delay_ms=1200]]"}) as r:
        lines = list(r.iter_lines())
    assert lines.count(": keepalive") >= 3
    assert [line for line in lines if line.startswith("event: ")][-1] == "event: response.completed"
    client = openai.OpenAI(base_url=f"{storeless_gateway}/v1", api_key=live.key, max_retries=0)
    with client.responses.stream(model=MODEL, input="slow [[sim:words=1,chunk_delay_ms=1200]]") as stream:
        assert stream.get_final_response().output_text == "The"
