"""Unit tests of prompt caching through /chat/completions (proxy.translation.caching and its use
by the request translator and the usage mapping): SPEC §3 "Prompt caching", no Django.

Run alone with: .venv/bin/pytest -p no:django --noconftest tests/test_caching.py
"""
from __future__ import annotations

import pytest

from proxy.translation import StreamTranslator, normalize_usage, openai_usage
from tests.test_streaming import block_delta, block_start, block_stop, events, parse_sse, stop
from tests.test_translate import (
    PNG,
    SPEC,
    WEATHER_TOOL,
    assistant,
    call,
    data_url,
    image_part,
    payload,
    rejected,
    tool,
    tr,
    user,
)

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE = {"type": "ephemeral", "ttl": "5m"}


def text(value, cache_control=None):
    part = {"type": "text", "text": value}
    if cache_control is not None:
        part["cache_control"] = cache_control
    return part


def cached_tool(cache_control=EPHEMERAL, inside=False):
    function = dict(WEATHER_TOOL["function"])
    if inside:
        return {"type": "function", "function": {**function, "cache_control": cache_control}}
    return {"type": "function", "function": function, "cache_control": cache_control}


# --- cache_control reaches the matching block ---------------------------------------------------

def test_text_parts_in_every_role_carry_their_cache_control():
    p = payload(tools=[WEATHER_TOOL], messages=[
        {"role": "system", "content": [text("long system prompt", HOUR)]},
        {"role": "user", "content": [text("doc", HOUR), text("question")]},
        {"role": "assistant", "content": [text("answer", FIVE)], "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": [text("4 C", EPHEMERAL)]},
    ])
    assert p["system"] == [{"type": "text", "text": "long system prompt", "cache_control": HOUR}]
    assert p["messages"][0]["content"] == [{"type": "text", "text": "doc", "cache_control": HOUR},
                                           {"type": "text", "text": "question"}]
    assert p["messages"][1]["content"][0] == {"type": "text", "text": "answer", "cache_control": FIVE}
    assert p["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1", "content": [
        {"type": "text", "text": "4 C", "cache_control": EPHEMERAL}]}


def test_image_parts_carry_their_cache_control():
    part = {**image_part(data_url(PNG)), "cache_control": HOUR}
    block = payload(messages=[user([part, text("what is it?")])])["messages"][0]["content"][0]
    assert block["type"] == "image" and block["cache_control"] == HOUR


@pytest.mark.parametrize("inside", [False, True])
def test_tool_definitions_carry_their_cache_control(inside):
    p = payload(tools=[cached_tool(HOUR, inside=inside)])
    assert p["tools"][0]["cache_control"] == HOUR and p["tools"][0]["name"] == "get_weather"


def test_a_message_level_cache_control_marks_its_last_block():
    p = payload(tools=[WEATHER_TOOL], messages=[
        {"role": "system", "content": "You are terse.", "cache_control": HOUR},
        {"role": "user", "content": "Weather?", "cache_control": FIVE},
        assistant(None, [call()]),
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C", "cache_control": FIVE}])
    assert p["system"] == [{"type": "text", "text": "You are terse.", "cache_control": HOUR}]
    assert p["messages"][0]["content"] == [{"type": "text", "text": "Weather?", "cache_control": FIVE}]
    assert p["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "4 C",
                                            "cache_control": FIVE}]


def test_no_cache_control_means_none_upstream():
    assert "cache_control" not in str(payload(tools=[WEATHER_TOOL], messages=[user([text("hi")])]))


# --- top-level cache_control: one breakpoint on the last cacheable block ---------------------------

def test_top_level_cache_control_marks_the_last_block_of_the_prompt():
    p = payload(cache_control=HOUR, messages=[{"role": "system", "content": "sys"}, user("a"),
                                              assistant("b"), user([text("c"), text("d")])])
    assert p["messages"][-1]["content"] == [{"type": "text", "text": "c"},
                                            {"type": "text", "text": "d", "cache_control": HOUR}]
    assert "cache_control" not in p["system"][0] and "cache_control" not in p
    assert str(p).count("cache_control") == 1


def test_top_level_cache_control_after_tool_results_marks_the_result():
    p = payload(cache_control=EPHEMERAL, tools=[WEATHER_TOOL], messages=[user(), assistant(None, [call()]), tool()])
    assert p["messages"][-1]["content"][-1]["cache_control"] == EPHEMERAL


def test_top_level_cache_control_does_not_double_an_explicit_breakpoint():
    p = payload(cache_control=HOUR, messages=[user([text("a", FIVE)])])
    assert p["messages"][0]["content"] == [{"type": "text", "text": "a", "cache_control": FIVE}]


# --- validation: 400s naming the client's field ---------------------------------------------------

@pytest.mark.parametrize("value,param", [
    ({"type": "persistent"}, "messages[0].content[0].cache_control.type"),
    ({}, "messages[0].content[0].cache_control.type"),
    ({"type": "ephemeral", "ttl": "10m"}, "messages[0].content[0].cache_control.ttl"),
    ({"type": "ephemeral", "ttl": 300}, "messages[0].content[0].cache_control.ttl"),
    ({"type": "ephemeral", "scope": "global"}, "messages[0].content[0].cache_control.scope"),
    ("ephemeral", "messages[0].content[0].cache_control"),
])
def test_bad_cache_control_is_a_400_naming_the_field(value, param):
    rejected(param, messages=[user([text("a", value)])])


def test_bad_top_level_and_tool_cache_control_name_their_fields():
    rejected("cache_control.ttl", cache_control={"type": "ephemeral", "ttl": "1d"})
    rejected("tools[0].cache_control.type", tools=[cached_tool({"type": "x"})])
    rejected("tools[0].function.cache_control", tools=[{**cached_tool(HOUR), "function": {
        **WEATHER_TOOL["function"], "cache_control": HOUR}}])


def test_more_than_four_breakpoints_is_a_400_naming_the_fifth():
    messages = [user([text(f"p{i}", EPHEMERAL) for i in range(5)])]
    err = rejected("messages[0].content[4].cache_control", messages=messages)
    assert "4" in err.message
    payload(messages=[user([text(f"p{i}", EPHEMERAL) for i in range(4)])])  # four are fine


def test_the_fifth_breakpoint_is_counted_in_prompt_order_tools_system_messages():
    messages = [user([text("a", EPHEMERAL), text("b", EPHEMERAL)]),
                {"role": "system", "content": [text("s", EPHEMERAL)]}]
    rejected("messages[0].content[1].cache_control", tools=[cached_tool(), {**cached_tool(), "function": {
        "name": "other"}}], messages=messages)


def test_top_level_cache_control_counts_as_a_breakpoint():
    messages = [user([text(f"p{i}", EPHEMERAL) for i in range(4)] + [text("last")])]
    rejected("cache_control", cache_control=EPHEMERAL, messages=messages)


def test_a_1h_breakpoint_after_a_5m_one_is_a_400():
    rejected("messages[0].content[1].cache_control", messages=[user([text("a", FIVE), text("b", HOUR)])])
    rejected("messages[0].content[1].cache_control", messages=[user([text("a", EPHEMERAL), text("b", HOUR)])])
    rejected("cache_control", cache_control=HOUR, messages=[user([text("a", FIVE), text("b")])])


def test_prompt_order_decides_1h_before_5m_not_message_order():
    # The system message comes last in the list but first in the prompt: its 5m is before the user's 1h.
    rejected("messages[0].content[0].cache_control", messages=[
        user([text("a", HOUR)]), {"role": "system", "content": [text("s", FIVE)]}])
    p = payload(tools=[cached_tool(HOUR)], messages=[{"role": "system", "content": [text("s", HOUR)]},
                                                     user([text("a", FIVE)])])
    assert p["tools"][0]["cache_control"] == HOUR


def test_a_breakpoint_on_an_empty_text_part_is_a_400():
    rejected("messages[0].content[1].cache_control", messages=[user([text("a"), text("  ", EPHEMERAL)])])


# --- usage: reads and writes, plain and streamed ------------------------------------------------------

CACHE_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 5000,
               "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
               "output_tokens": 7}


def test_usage_reports_cache_reads_and_writes():
    usage = normalize_usage(CACHE_USAGE)
    assert (usage.cache_write_5m, usage.cache_write_1h, usage.cache_read) == (1000, 2000, 5000)
    out = openai_usage(usage)
    assert out["prompt_tokens"] == 8012
    assert out["prompt_tokens_details"] == {"cached_tokens": 5000, "cache_write_tokens": 3000, "audio_tokens": 0}


def test_streamed_usage_chunk_reports_cache_reads_and_writes():
    stream = events(block_start(0, {"type": "text", "text": ""}), block_delta(0, {"type": "text_delta", "text": "x"}),
                    block_stop(0)) + stop()
    stream[0][1]["message"]["usage"] = CACHE_USAGE
    t = tr(SPEC, stream=True, stream_options={"include_usage": True})
    translator = StreamTranslator(t, "chatcmpl-c", 1)
    chunks, _ = parse_sse(b"".join(translator.feed(event, data) for event, data in stream))
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == 8012 and usage["completion_tokens"] == 20
    assert usage["prompt_tokens_details"]["cached_tokens"] == 5000
    assert usage["prompt_tokens_details"]["cache_write_tokens"] == 3000
    assert (translator.usage.cache_write_5m, translator.usage.cache_write_1h) == (1000, 2000)
