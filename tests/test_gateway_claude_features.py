"""Claude's own features through /chat/completions, end to end (SPEC §3 "Anthropic features on
/chat/completions"): the official openai SDK and real agent frameworks → the gateway under
uvicorn → the Anthropic simulator, which checks cache_control and thinking signatures the
way the real API does and shows what reached it (``GET /_sim/requests``); usage, records,
charges and /generation checked after."""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import httpx
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.shared import Reasoning

from proxy.translation.reasoning import FORMAT
from tests.test_gateway import WEATHER

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
SONNET = "anthropic/claude-sonnet-4-6"  # adaptive thinking in the model table
HAIKU = "claude-haiku-4-5"              # thinking with a budget


def upstream_body(simulator_url: str, needle: str) -> dict:
    """The body of the latest request that reached the simulator and contains ``needle``."""
    entries = httpx.get(f"{simulator_url}/_sim/requests", params={"last": 50}, timeout=10).json()["data"]
    for entry in reversed(entries):
        if entry["path"].startswith("/v1/messages") and needle in json.dumps(entry["body"], ensure_ascii=False):
            return entry["body"]
    raise AssertionError(f"no upstream request contains {needle!r}")


def generation(live, generation_id: str) -> dict:
    live.charge_of(generation_id)
    response = httpx.get(f"{live.url}/api/v1/generation", params={"id": generation_id},
                         headers={"Authorization": f"Bearer {live.key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def sonnet_cost(data: dict) -> Decimal:
    """SPEC §5 at Sonnet 4.6's seed prices: in 3, out 15, 5m write 1.25×, 1h write 2×, read 0.1×."""
    return (data["tokens_input"] * Decimal(3) + data["tokens_output"] * Decimal(15)
            + data["tokens_cache_write_5m"] * Decimal("3.75") + data["tokens_cache_write_1h"] * Decimal(6)
            + data["tokens_cache_read"] * Decimal("0.3")) / 1_000_000


# --- prompt caching ---------------------------------------------------------------------------------

def test_cache_breakpoints_reach_upstream_and_writes_then_reads_are_billed_exactly(live, simulator_url):
    tag = uuid.uuid4().hex
    document = f"Reference document {tag}. " + "The harbour of Oslo is busy in summer. " * 200
    messages = [
        {"role": "system", "content": [{"type": "text", "text": f"You are a guide {tag}.", "cache_control": HOUR}]},
        {"role": "user", "content": [{"type": "text", "text": document, "cache_control": EPHEMERAL},
                                     {"type": "text", "text": "What is busy in summer?"}]},
    ]
    client = live.openai()
    first = client.chat.completions.create(model=SONNET, messages=messages, tools=[{**WEATHER, "cache_control": HOUR}])

    sent = upstream_body(simulator_url, tag)
    assert sent["tools"][0]["cache_control"] == HOUR
    assert sent["system"] == [{"type": "text", "text": f"You are a guide {tag}.", "cache_control": HOUR}]
    assert sent["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert "cache_control" not in sent["messages"][0]["content"][1]

    details = first.usage.prompt_tokens_details
    written = details.cache_write_tokens
    assert details.cached_tokens == 0 and written > 0
    data = generation(live, first.id)
    assert data["tokens_cache_write_1h"] > 0 and data["tokens_cache_write_5m"] > 0
    assert data["tokens_cache_write_5m"] + data["tokens_cache_write_1h"] == written
    assert data["tokens_prompt"] == first.usage.prompt_tokens
    assert Decimal(data["total_cost"]) == sonnet_cost(data) == Decimal(first.usage.model_extra["cost"])

    second = client.chat.completions.create(model=SONNET, messages=messages, tools=[{**WEATHER, "cache_control": HOUR}])
    assert second.usage.prompt_tokens_details.cached_tokens == written
    assert second.usage.prompt_tokens_details.cache_write_tokens == 0
    data = generation(live, second.id)
    assert data["tokens_cache_read"] == written and data["tokens_cache_write_5m"] == 0
    assert Decimal(data["total_cost"]) == sonnet_cost(data) < Decimal(first.usage.model_extra["cost"])


def test_top_level_cache_control_marks_the_last_block_and_streams_cache_usage(live, simulator_url):
    tag = uuid.uuid4().hex
    messages = [{"role": "user", "content": f"Long question {tag} " + "about fjords " * 300}]
    usages = []
    for _ in range(2):
        stream = live.openai().chat.completions.create(model=SONNET, messages=messages, stream=True,
                                                       stream_options={"include_usage": True},
                                                       extra_body={"cache_control": HOUR})
        usages.append([chunk.usage for chunk in stream if chunk.usage][-1])
    sent = upstream_body(simulator_url, tag)
    assert sent["messages"][-1]["content"][-1]["cache_control"] == HOUR and "cache_control" not in sent
    written = usages[0].prompt_tokens_details.cache_write_tokens
    assert written > 0 and usages[0].prompt_tokens_details.cached_tokens == 0
    assert usages[1].prompt_tokens_details.cached_tokens == written


def test_a_fifth_breakpoint_is_a_400_naming_it(live):
    parts = [{"type": "text", "text": f"part {i}", "cache_control": EPHEMERAL} for i in range(5)]
    with pytest.raises(openai.BadRequestError) as caught:
        live.openai().chat.completions.create(model=SONNET, messages=[{"role": "user", "content": parts}])
    assert caught.value.body["param"] == "messages[0].content[4].cache_control"


# --- reasoning in and out ---------------------------------------------------------------------------

def test_reasoning_effort_on_an_adaptive_model_returns_signed_reasoning(live, simulator_url):
    tag = uuid.uuid4().hex
    reply = live.openai().chat.completions.create(
        model=SONNET, reasoning_effort="low", messages=[{"role": "user", "content": f"Think {tag} [[sim:thinking_words=12]]"}])
    sent = upstream_body(simulator_url, tag)
    assert sent["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert sent["output_config"] == {"effort": "low"} and sent["max_tokens"] == 1024 + 1024
    message = reply.choices[0].message
    extra = message.model_extra
    assert len(extra["reasoning_content"].split()) == 12 and message.content
    [detail] = extra["reasoning_details"]
    assert detail["type"] == "reasoning.text" and detail["format"] == FORMAT and detail["index"] == 0
    assert detail["text"] == extra["reasoning_content"] and detail["signature"]
    record = live.record_of(reply.id)
    assert record.output_tokens == reply.usage.completion_tokens >= 12 + len(message.content.split())
    assert Decimal(generation(live, reply.id)["total_cost"]) == Decimal(reply.usage.model_extra["cost"])


def test_opus_4_7_takes_reasoning_effort_as_adaptive_thinking(live, simulator_url):
    tag = uuid.uuid4().hex
    reply = live.openai().chat.completions.create(
        model="claude-opus-4-7", reasoning_effort="high", messages=[{"role": "user", "content": f"Plan {tag}"}])
    sent = upstream_body(simulator_url, tag)
    assert sent["thinking"]["type"] == "adaptive" and sent["output_config"] == {"effort": "high"}
    assert reply.choices[0].message.model_extra["reasoning_details"][0]["signature"]


def test_openrouter_reasoning_on_a_budget_model(live, simulator_url):
    tag = uuid.uuid4().hex
    reply = live.openai().chat.completions.create(
        model=HAIKU, extra_body={"reasoning": {"max_tokens": 2000}},
        messages=[{"role": "user", "content": f"Budget {tag} [[sim:thinking_words=20]]"}])
    sent = upstream_body(simulator_url, tag)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2000} and "output_config" not in sent
    assert len(reply.choices[0].message.model_extra["reasoning_content"].split()) == 20


def test_redacted_thinking_comes_back_as_encrypted_reasoning(live):
    reply = live.openai().chat.completions.create(
        model=SONNET, reasoning_effort="low", messages=[{"role": "user", "content": "Hm [[sim:redacted_thinking]]"}])
    details = reply.choices[0].message.model_extra["reasoning_details"]
    assert [d["type"] for d in details] == ["reasoning.text", "reasoning.encrypted"]
    assert details[1]["data"] and details[1]["index"] == 1 and details[1]["format"] == FORMAT


def test_streamed_reasoning_accumulates_with_the_sdk_like_the_plain_answer(live):
    client = live.openai()
    with client.chat.completions.stream(
        model=SONNET, reasoning_effort="low", stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream thoughts [[sim:thinking_words=30,redacted_thinking]]"}],
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    extra = message.model_extra
    assert len(extra["reasoning_content"].split()) == 30 and message.content
    text, redacted = extra["reasoning_details"]
    assert text["type"] == "reasoning.text" and text["format"] == FORMAT and text["text"] == extra["reasoning_content"]
    assert text["signature"] and redacted["type"] == "reasoning.encrypted" and redacted["data"]
    assert live.record_of(final.id).output_tokens == final.usage.completion_tokens
    assert Decimal(generation(live, final.id)["total_cost"]) == Decimal(final.usage.model_extra["cost"])


def test_excluded_reasoning_is_hidden_plain_and_streamed_but_billed(live, simulator_url):
    tag = uuid.uuid4().hex
    client = live.openai()
    body = {"model": HAIKU, "extra_body": {"reasoning": {"effort": "low", "exclude": True}},
            "messages": [{"role": "user", "content": f"Quiet {tag} [[sim:thinking_words=50,words=3]]"}]}
    reply = client.chat.completions.create(**body)
    assert "reasoning_content" not in reply.choices[0].message.model_extra
    assert reply.usage.completion_tokens >= 53  # the thinking is billed as output all the same
    assert upstream_body(simulator_url, tag)["thinking"]["type"] == "enabled"
    with client.chat.completions.stream(**body, stream_options={"include_usage": True}) as stream:
        final = stream.get_final_completion()
    assert not (final.choices[0].message.model_extra or {}).get("reasoning_details")
    assert final.usage.completion_tokens == reply.usage.completion_tokens
    assert live.record_of(final.id).output_tokens == final.usage.completion_tokens


def test_a_stream_cancelled_mid_thought_is_billed_for_the_thinking_delivered(live):
    with httpx.stream("POST", f"{live.url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {live.key}"},
                      json={"model": HAIKU, "stream": True, "reasoning_effort": "high", "messages": [
                          {"role": "user", "content": "ponder [[sim:thinking_words=400,chunk_delay_ms=20]]"}]},
                      timeout=30) as response:
        generation_id = response.headers["x-generation-id"]
        seen = 0
        for line in response.iter_lines():
            assert '"content":"' not in line or '"content":""' in line  # no answer text yet
            seen += '"reasoning_content"' in line
            if seen >= 10:
                break
    record = live.record_of(generation_id, timeout=15)
    assert record.status == "cancelled" and record.output_estimated
    assert 10 <= record.output_tokens < 400  # the thinking streamed, not all of it
    assert live.charge_of(generation_id).amount > 0


def test_reasoning_on_a_model_without_thinking_is_a_400(live):
    with pytest.raises(openai.BadRequestError) as caught:
        live.openai().chat.completions.create(model="claude-3-5-haiku-latest", reasoning_effort="low",
                                              messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["param"] == "reasoning_effort"


# --- reasoning back: the tool loop ---------------------------------------------------------------------

@pytest.mark.parametrize("model", [SONNET, HAIKU])
@pytest.mark.parametrize("marker", ["tool", "tool,redacted_thinking"])
def test_tool_loop_carries_signed_thinking_into_turn_two(live, simulator_url, model, marker):
    tag = uuid.uuid4().hex
    client = live.openai()
    history = [{"role": "user", "content": f"Weather in Oslo {tag}? [[sim:{marker}]]"}]
    first = client.chat.completions.create(model=model, reasoning_effort="low", tools=[WEATHER], messages=history)
    turn = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    details = turn.model_extra["reasoning_details"]
    history += [turn.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": f"4 °C and rain {tag}"}]
    second = client.chat.completions.create(model=model, reasoning_effort="low", tools=[WEATHER], messages=history)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content

    sent = upstream_body(simulator_url, f"rain {tag}")
    assert sent["thinking"]["type"] in ("enabled", "adaptive")  # kept on for the tool turn
    blocks = sent["messages"][1]["content"]
    expected = [{"type": "thinking", "thinking": details[0]["text"], "signature": details[0]["signature"]}]
    if "redacted" in marker:
        expected.append({"type": "redacted_thinking", "data": details[1]["data"]})
    assert blocks[:len(expected)] == expected and blocks[len(expected)]["type"] in ("text", "tool_use")


def test_streamed_tool_loop_sends_the_accumulated_thinking_back(live, simulator_url):
    client = live.openai()
    tag = uuid.uuid4().hex
    history = [{"role": "user", "content": "Weather? [[sim:tool,thinking_words=9]]"}]
    with client.chat.completions.stream(model=SONNET, reasoning_effort="medium", tools=[WEATHER],
                                        messages=history) as stream:
        turn = stream.get_final_completion().choices[0].message
    history += [turn.model_dump(exclude_none=True, exclude={"parsed"}),
                {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": f"sunny {tag}"}]
    second = client.chat.completions.create(model=SONNET, reasoning_effort="medium", tools=[WEATHER], messages=history)
    assert second.choices[0].finish_reason == "stop"
    sent = upstream_body(simulator_url, f"sunny {tag}")
    assert sent["messages"][1]["content"][0]["signature"] == turn.model_extra["reasoning_details"][0]["signature"]


def test_altered_thinking_is_refused_upstream_not_silently_dropped(live):
    client = live.openai()
    history = [{"role": "user", "content": "Weather? [[sim:tool]]"}]
    turn = client.chat.completions.create(model=SONNET, reasoning_effort="low", tools=[WEATHER],
                                          messages=history).choices[0].message
    message = turn.model_dump(exclude_none=True)
    message["reasoning_details"][0]["text"] += " (edited)"
    history += [message, {"role": "tool", "tool_call_id": turn.tool_calls[0].id, "content": "4 C"}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=SONNET, reasoning_effort="low", tools=[WEATHER], messages=history)


# --- real clients ----------------------------------------------------------------------------------------

def test_langchain_chat_openai_runs_a_tool_loop_with_reasoning_effort(live):
    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"4 °C in {city}"

    llm = ChatOpenAI(model=SONNET, base_url=f"{live.url}/api/v1", api_key=live.key, reasoning_effort="low",
                     use_responses_api=False, max_retries=0).bind_tools([get_weather])
    messages = [HumanMessage("Weather in Oslo? [[sim:tool]]")]
    first = llm.invoke(messages)
    assert first.tool_calls and first.tool_calls[0]["name"] == "get_weather"
    messages += [first, ToolMessage(get_weather.invoke(first.tool_calls[0]["args"]),
                                    tool_call_id=first.tool_calls[0]["id"])]
    second = llm.invoke(messages)
    assert not second.tool_calls and "Simulated reply" in second.content
    assert second.usage_metadata["output_tokens"] > 0


def test_openai_agents_chat_completions_model_runs_a_tool_loop_with_reasoning(live):
    set_tracing_disabled(True)
    calls = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return f"4 °C in {city}"

    client = openai.AsyncOpenAI(base_url=f"{live.url}/api/v1", api_key=live.key, max_retries=0)
    agent = Agent(name="weather", instructions="Answer with the weather.", tools=[get_weather],
                  model=OpenAIChatCompletionsModel(model=SONNET, openai_client=client),
                  model_settings=ModelSettings(reasoning=Reasoning(effort="low")))
    result = Runner.run_sync(agent, "Weather in Oslo? [[sim:tool]]", max_turns=4)
    assert calls and "Simulated reply" in result.final_output
    kinds = [item.type for item in result.new_items]
    assert "reasoning_item" in kinds and "tool_call_item" in kinds and "tool_call_output_item" in kinds
