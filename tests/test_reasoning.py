"""Unit tests of reasoning through /chat/completions (proxy.translation.reasoning and its use by
the request, response and stream translators): every rule of SPEC §3 "Reasoning in / out /
back", no Django.

Run alone with: .venv/bin/pytest -p no:django --noconftest tests/test_reasoning.py
"""
from __future__ import annotations

import copy

import pytest
from openai.lib.streaming._deltas import accumulate_delta
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from proxy.errors import GatewayError
from proxy.modelspec import ModelSpec
from proxy.translation import DEFAULT_MAX_TOKENS, StreamTranslator, translate_response
from proxy.translation.reasoning import (
    FORMAT,
    decode_thinking,
    encode_thinking,
    reasoning_details,
    reasoning_text,
    thinking_blocks,
)
from tests.test_streaming import block_delta, block_start, block_stop, content_chunks, events, parse_sse, stop
from tests.test_translate import (
    ADAPTIVE,
    SPEC,
    THINKING,
    WEATHER_TOOL,
    assistant,
    call,
    payload,
    rejected,
    tool,
    tr,
    user,
)

SIGNED = {"type": "thinking", "thinking": "Oslo is in Norway; check the weather.", "signature": "EqQBsig=="}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va=="}
SIGNED_DETAIL = {"type": "reasoning.text", "text": SIGNED["thinking"], "signature": SIGNED["signature"],
                 "format": FORMAT, "index": 0}
REDACTED_DETAIL = {"type": "reasoning.encrypted", "data": REDACTED["data"], "format": FORMAT, "index": 1}
ADAPTIVE_STRUCTURED = ModelSpec(public_id="as", upstream_id="as-up", thinking_mode="adaptive", structured_output=True)


def thinking_assistant(details, content=None, tool_calls=None):
    message = assistant(content, tool_calls)
    message["reasoning_details"] = details
    return message


def tool_loop(details=None):
    turn = assistant(None, [call()]) if details is None else thinking_assistant(details, None, [call()])
    return [user("Weather in Oslo?"), turn, tool()]


# --- in: reasoning_effort and reasoning{} → the model's thinking form -------------------------

def test_enabled_model_gets_a_budget():
    p = payload(THINKING, reasoning_effort="high")
    assert p["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert p["max_tokens"] == 4096 + DEFAULT_MAX_TOKENS and "output_config" not in p


@pytest.mark.parametrize("effort,sent", [("minimal", "low"), ("low", "low"), ("medium", "medium"),
                                         ("high", "high"), ("xhigh", "xhigh"), ("max", "max")])
def test_adaptive_model_gets_adaptive_thinking_and_an_effort(effort, sent):
    p = payload(ADAPTIVE, reasoning_effort=effort)
    assert p["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert p["output_config"] == {"effort": sent}
    assert "budget_tokens" not in p["thinking"]


def test_adaptive_model_without_a_max_gets_room_for_thinking_and_answer():
    assert payload(ADAPTIVE, reasoning_effort="high")["max_tokens"] == 4096 + DEFAULT_MAX_TOKENS
    assert payload(ADAPTIVE, reasoning_effort="low", max_completion_tokens=300)["max_tokens"] == 300


def test_adaptive_effort_merges_with_native_structured_output():
    p = payload(ADAPTIVE_STRUCTURED, reasoning_effort="low", response_format={
        "type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}})
    assert p["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"}


def test_openrouter_reasoning_effort_is_the_same_as_reasoning_effort():
    assert payload(THINKING, reasoning={"effort": "medium"}) == payload(THINKING, reasoning_effort="medium")
    assert payload(ADAPTIVE, reasoning={"effort": "high"}) == payload(ADAPTIVE, reasoning_effort="high")


def test_both_spellings_may_be_sent_when_they_agree():
    assert payload(THINKING, reasoning_effort="low", reasoning={"effort": "low"})["thinking"]["budget_tokens"] == 1024
    rejected("reasoning.effort", THINKING, reasoning_effort="low", reasoning={"effort": "high"})


def test_reasoning_max_tokens_is_the_budget_on_enabled_models():
    p = payload(THINKING, reasoning={"max_tokens": 3000})
    assert p["thinking"] == {"type": "enabled", "budget_tokens": 3000} and p["max_tokens"] == 3000 + DEFAULT_MAX_TOKENS


def test_reasoning_max_tokens_fits_under_an_explicit_max():
    p = payload(THINKING, reasoning={"max_tokens": 3000}, max_tokens=2000)
    assert p["thinking"]["budget_tokens"] == 1999 and p["max_tokens"] == 2000


@pytest.mark.parametrize("budget,effort", [(1024, "low"), (2000, "medium"), (3000, "high"), (8192, "xhigh"),
                                           (50_000, "max")])
def test_reasoning_max_tokens_becomes_the_smallest_effort_that_allows_it_on_adaptive_models(budget, effort):
    p = payload(ADAPTIVE, reasoning={"max_tokens": budget})
    assert p["thinking"]["type"] == "adaptive" and p["output_config"] == {"effort": effort}


def test_enabled_true_alone_means_medium_effort():
    assert payload(THINKING, reasoning={"enabled": True})["thinking"]["budget_tokens"] == 2048
    assert payload(ADAPTIVE, reasoning={"enabled": True})["output_config"] == {"effort": "medium"}


@pytest.mark.parametrize("body", [{"reasoning": {"enabled": False}}, {"reasoning": {}},
                                  {"reasoning": {"exclude": True}}, {"reasoning_effort": "none"},
                                  {"reasoning": {"effort": "none"}}])
def test_reasoning_switched_off(body):
    t = tr(THINKING, **body)
    assert "thinking" not in t.payload and t.payload["max_tokens"] == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize("body,param", [
    ({"reasoning": {"enabled": False, "effort": "high"}}, "reasoning"),
    ({"reasoning_effort": "none", "reasoning": {"enabled": True}}, "reasoning"),
    ({"reasoning": {"effort": "high", "max_tokens": 4000}}, "reasoning.max_tokens"),
    ({"reasoning_effort": "high", "reasoning": {"max_tokens": 4000}}, "reasoning.max_tokens"),
    ({"reasoning": {"max_tokens": 1000}}, "reasoning.max_tokens"),
    ({"reasoning": {"max_tokens": "4000"}}, "reasoning.max_tokens"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"reasoning": {"effort": "low", "exclude": "yes"}}, "reasoning.exclude"),
    ({"reasoning": {"enabled": 1}}, "reasoning.enabled"),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary"),
    ({"reasoning": "high"}, "reasoning"),
])
def test_bad_reasoning_is_a_400_naming_the_field(body, param):
    rejected(param, THINKING, **body)


@pytest.mark.parametrize("body,param", [({"reasoning": {"effort": "low"}}, "reasoning"),
                                        ({"reasoning": {"enabled": True}}, "reasoning"),
                                        ({"reasoning_effort": "low"}, "reasoning_effort")])
def test_reasoning_on_a_model_without_thinking_names_the_field_used(body, param):
    err = rejected(param, SPEC, **body)
    assert err.code == "unsupported_parameter"


def test_reasoning_conflicts_name_the_field_used():
    err = rejected("temperature", THINKING, reasoning={"effort": "low"}, temperature=0.3)
    assert "reasoning" in err.message


def test_exclude_asks_adaptive_models_to_omit_the_text():
    t = tr(ADAPTIVE, reasoning={"effort": "low", "exclude": True})
    assert t.payload["thinking"] == {"type": "adaptive", "display": "omitted"} and t.exclude_reasoning
    t = tr(THINKING, reasoning={"effort": "low", "exclude": True})
    assert t.payload["thinking"] == {"type": "enabled", "budget_tokens": 1024} and t.exclude_reasoning
    assert not tr(THINKING, reasoning_effort="low").exclude_reasoning


# --- back: reasoning_details → thinking blocks, first, signatures intact --------------------------

def test_reasoning_details_go_upstream_first_and_keep_thinking_on_in_a_tool_loop():
    p = payload(THINKING, reasoning_effort="medium", tools=[WEATHER_TOOL],
                messages=tool_loop([SIGNED_DETAIL, REDACTED_DETAIL]))
    assert p["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert p["messages"][1]["content"] == [SIGNED, REDACTED, {
        "type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}]


def test_adaptive_thinking_stays_on_in_a_tool_loop_with_reasoning_details():
    p = payload(ADAPTIVE, reasoning_effort="low", tools=[WEATHER_TOOL], messages=tool_loop([SIGNED_DETAIL]))
    assert p["thinking"]["type"] == "adaptive" and p["messages"][1]["content"][0] == SIGNED


def test_thinking_goes_before_text_and_tool_calls():
    p = payload(THINKING, reasoning_effort="low", tools=[WEATHER_TOOL], messages=[
        user(), thinking_assistant([SIGNED_DETAIL], "Checking.", [call()]), tool()])
    assert [b["type"] for b in p["messages"][1]["content"]] == ["thinking", "text", "tool_use"]


def test_tool_loop_without_reasoning_details_still_turns_thinking_off():
    """Plain OpenAI clients drop reasoning_details; Anthropic would reject the turn."""
    p = payload(ADAPTIVE, reasoning_effort="low", tools=[WEATHER_TOOL], messages=tool_loop())
    assert "thinking" not in p and "output_config" not in p and p["max_tokens"] == DEFAULT_MAX_TOKENS


def test_thinking_only_in_an_earlier_turn_does_not_keep_it_on_for_a_bare_tool_turn():
    messages = [user(), thinking_assistant([SIGNED_DETAIL], "Hi."), user("weather?"),
                assistant(None, [call()]), tool()]
    p = payload(THINKING, reasoning_effort="low", tools=[WEATHER_TOOL], messages=messages)
    assert "thinking" not in p
    assert [b["type"] for b in p["messages"][1]["content"]] == ["text"]  # stripped with thinking off


def test_history_thinking_is_left_out_when_thinking_is_off():
    p = payload(THINKING, messages=[user(), thinking_assistant([SIGNED_DETAIL, REDACTED_DETAIL], "Hi."), user("and?")])
    assert p["messages"][1]["content"] == [{"type": "text", "text": "Hi."}]


def test_reasoning_details_kept_in_earlier_turns_when_thinking_is_on():
    p = payload(THINKING, reasoning_effort="low", messages=[user(), thinking_assistant([SIGNED_DETAIL], "Hi."),
                                                            user("and?")])
    assert p["messages"][1]["content"][0] == SIGNED


def test_other_formats_and_summaries_are_left_out():
    details = [{"type": "reasoning.summary", "summary": "short", "format": FORMAT, "index": 0},
               {"type": "reasoning.text", "text": "gpt thoughts", "format": "openai-responses-v1", "index": 1},
               {"type": "reasoning.encrypted", "data": "xyz", "format": "google-gemini-v1", "index": 2},
               {**SIGNED_DETAIL, "index": 3}]
    assert thinking_blocks(details, "d") == [SIGNED]


def test_format_may_be_absent_or_repeated_by_an_accumulator():
    detail = {k: v for k, v in SIGNED_DETAIL.items() if k != "format"}
    assert thinking_blocks([detail], "d") == [SIGNED]
    assert thinking_blocks([{**SIGNED_DETAIL, "format": FORMAT * 3}], "d") == [SIGNED]


def test_raw_stream_fragments_are_merged_by_index():
    fragments = [{"type": "reasoning.text", "text": "Oslo is in Norway; ", "format": FORMAT, "index": 0},
                 {"type": "reasoning.text", "text": "check the weather.", "index": 0},
                 {"type": "reasoning.text", "signature": "EqQBsig==", "index": 0},
                 {"type": "reasoning.encrypted", "data": REDACTED["data"], "format": FORMAT, "index": 1}]
    assert thinking_blocks(fragments, "d") == [SIGNED, REDACTED]


@pytest.mark.parametrize("details,param", [
    ([{"type": "reasoning.text", "text": "x", "format": FORMAT, "index": 0}], "messages[1].reasoning_details[0].signature"),
    ([{"type": "reasoning.text", "text": "x", "signature": "", "index": 0}], "messages[1].reasoning_details[0].signature"),
    ([{"type": "reasoning.encrypted", "format": FORMAT, "index": 0}], "messages[1].reasoning_details[0].data"),
    ([{"type": "reasoning.text", "text": 5, "signature": "s"}], "messages[1].reasoning_details[0].text"),
    ([{"type": "reasoning.magic", "format": FORMAT}], "messages[1].reasoning_details[0].type"),
    (["text"], "messages[1].reasoning_details[0]"),
    ({"type": "reasoning.text"}, "messages[1].reasoning_details"),
])
def test_bad_reasoning_details_are_a_400_naming_the_entry(details, param):
    rejected(param, THINKING, reasoning_effort="low", messages=[user(), thinking_assistant(details, "Hi."), user()])


def test_an_assistant_turn_with_only_thinking_is_no_turn():
    p = payload(THINKING, reasoning_effort="low", messages=[user(), thinking_assistant([SIGNED_DETAIL]), user("b")])
    assert [m["role"] for m in p["messages"]] == ["user"]


def test_reasoning_content_sent_back_is_ignored():
    message = assistant("Hi.")
    message["reasoning_content"] = "unsigned text cannot go upstream"
    assert payload(THINKING, messages=[user(), message, user()])["messages"][1]["content"] == [
        {"type": "text", "text": "Hi."}]


# --- out: thinking blocks → reasoning_content + reasoning_details --------------------------------

def _message(content, stop_reason="end_turn"):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 50}}


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}


def test_plain_response_returns_reasoning_content_and_details():
    message = translate_response(_message([SIGNED, REDACTED, {"type": "text", "text": "Checking."}, TOOL_USE],
                                          "tool_use"), tr(THINKING, reasoning_effort="low"),
                                 completion_id="chatcmpl-1", created=1)["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["reasoning_content"] == SIGNED["thinking"]
    assert message["reasoning_details"] == [SIGNED_DETAIL, REDACTED_DETAIL]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"


def test_excluded_reasoning_is_not_returned_but_output_is_still_counted():
    out = translate_response(_message([SIGNED, {"type": "text", "text": "Hi."}]),
                             tr(THINKING, reasoning={"effort": "low", "exclude": True}), completion_id="c", created=1)
    assert set(out["choices"][0]["message"]) == {"role", "content", "refusal"}
    assert out["usage"]["completion_tokens"] == 50


def test_no_reasoning_fields_without_thinking_blocks():
    message = translate_response(_message([{"type": "text", "text": "Hi."}]), tr(THINKING, reasoning_effort="low"),
                                 completion_id="c", created=1)["choices"][0]["message"]
    assert "reasoning_content" not in message and "reasoning_details" not in message


def test_only_redacted_thinking_has_no_reasoning_text():
    message = translate_response(_message([REDACTED, {"type": "text", "text": "Hi."}]), tr(),
                                 completion_id="c", created=1)["choices"][0]["message"]
    assert message["reasoning_content"] is None
    assert message["reasoning_details"] == [{**REDACTED_DETAIL, "index": 0}]


def test_returned_reasoning_round_trips_to_the_exact_blocks():
    blocks = [SIGNED, {"type": "thinking", "thinking": "", "signature": "Eomitted=="}, REDACTED]
    message = translate_response(_message([*blocks, TOOL_USE], "tool_use"), tr(ADAPTIVE, reasoning_effort="low"),
                                 completion_id="c", created=1)["choices"][0]["message"]
    p = payload(ADAPTIVE, reasoning_effort="low", tools=[WEATHER_TOOL], messages=[
        user(), message, tool(tool_call_id="toolu_1")])
    assert p["messages"][1]["content"] == [*blocks, TOOL_USE]


def test_text_and_details_helpers():
    assert reasoning_text([SIGNED, REDACTED, {"type": "thinking", "thinking": " more"}]) == SIGNED["thinking"] + " more"
    assert reasoning_details([{"type": "text", "text": "x"}, REDACTED]) == [{**REDACTED_DETAIL, "index": 0}]


def test_encoded_thinking_round_trips_and_rejects_anything_else():
    value = encode_thinking([SIGNED, {"type": "text", "text": "not thinking"}, REDACTED])
    assert isinstance(value, str) and value.isascii() and SIGNED["signature"] not in value
    assert decode_thinking(value, "item.encrypted_content") == [SIGNED, REDACTED]
    for bad in ("gAAAA-openai-blob", value[:-3] + "!!!", 5, None, "thb1." + "e30"):
        with pytest.raises(GatewayError) as caught:
            decode_thinking(bad, "item.encrypted_content")
        assert caught.value.status == 400 and caught.value.param == "item.encrypted_content"


# --- streams ------------------------------------------------------------------------------------

def thinking_stream(text_pieces=("Oslo is in Norway; ", "check the weather."), signature="EqQBsig=="):
    return [block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
            *[block_delta(0, {"type": "thinking_delta", "thinking": piece}) for piece in text_pieces],
            block_delta(0, {"type": "signature_delta", "signature": signature}), block_stop(0),
            block_start(1, {"type": "redacted_thinking", "data": REDACTED["data"]}), block_stop(1),
            block_start(2, {"type": "text", "text": ""}),
            block_delta(2, {"type": "text_delta", "text": "Checking."}), block_stop(2)]


def replay(stream, t=None):
    translator = StreamTranslator(t or tr(THINKING, reasoning_effort="low", stream=True), "chatcmpl-s", 1)
    return b"".join(translator.feed(event, data) for event, data in stream), translator


def deltas(raw: bytes) -> list[dict]:
    return [c["choices"][0]["delta"] for c in content_chunks(parse_sse(raw)[0])]


def test_stream_sends_reasoning_content_and_detail_fragments():
    raw, _ = replay(events(*thinking_stream()) + stop())
    fragments = [d for d in deltas(raw) if "reasoning_details" in d]
    assert [d.get("reasoning_content") for d in fragments] == ["Oslo is in Norway; ", "check the weather.", None, None]
    assert [d["reasoning_details"] for d in fragments] == [
        [{"type": "reasoning.text", "text": "Oslo is in Norway; ", "index": 0, "format": FORMAT}],
        [{"type": "reasoning.text", "text": "check the weather.", "index": 0}],
        [{"type": "reasoning.text", "signature": "EqQBsig==", "index": 0}],
        [{"type": "reasoning.encrypted", "data": REDACTED["data"], "index": 1, "format": FORMAT}],
    ]


def test_the_sdk_accumulator_rebuilds_the_plain_reasoning_details():
    raw, _ = replay(events(*thinking_stream()) + stop())
    message: dict = {}
    for delta in deltas(raw):
        accumulate_delta(message, copy.deepcopy(delta))
    assert message["reasoning_content"] == SIGNED["thinking"] and message["content"] == "Checking."
    assert message["reasoning_details"] == [SIGNED_DETAIL, REDACTED_DETAIL]
    assert thinking_blocks(message["reasoning_details"], "d") == [SIGNED, REDACTED]


def test_omitted_thinking_streams_one_fragment_with_the_signature():
    raw, _ = replay(events(*thinking_stream(text_pieces=("",), signature="Eomitted==")) + stop())
    first = [d for d in deltas(raw) if "reasoning_details" in d][0]
    assert first == {"reasoning_details": [{"type": "reasoning.text", "signature": "Eomitted==", "index": 0,
                                            "format": FORMAT, "text": ""}]}


def test_tool_calls_after_thinking_keep_their_own_index():
    stream = [*thinking_stream(), block_start(3, {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                  "input": {}}),
              block_delta(3, {"type": "input_json_delta", "partial_json": '{"city": "Oslo"}'}), block_stop(3)]
    raw, _ = replay(events(*stream) + stop("tool_use"))
    calls = [d["tool_calls"][0] for d in deltas(raw) if "tool_calls" in d]
    assert {c["index"] for c in calls} == {0} and calls[0]["id"] == "toolu_1"


def test_delivered_reasoning_counts_for_a_cancelled_stream():
    """A client that leaves mid-thought is billed for the thinking it received."""
    pieces = ("word " * 40, "word " * 40)
    _, translator = replay(events(*thinking_stream(text_pieces=pieces)[:3]))
    meter = translator.meter
    assert meter.delivered_chars == 400 and meter.delivered_events == 2
    usage, estimated = meter.billed_usage(cancelled=True)
    assert estimated and usage.output_tokens == 100


def test_excluded_reasoning_is_neither_sent_nor_counted_as_delivered():
    t = tr(THINKING, reasoning={"effort": "low", "exclude": True}, stream=True)
    raw, translator = replay(events(*thinking_stream()) + stop(), t)
    assert b"reasoning" not in raw and translator.meter.delivered_chars == len("Checking.")
    assert translator.usage.output_tokens == 20  # billed from upstream's count, thinking included


def test_stream_accumulation_by_the_openai_sdk_keeps_working():
    """ChatCompletionStreamState (what ``client.chat.completions.stream()`` uses) takes the
    extra delta fields and keeps them on the final message."""
    raw, _ = replay(events(*thinking_stream()) + stop())
    state = ChatCompletionStreamState()
    for chunk in parse_sse(raw)[0]:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    message = state.get_final_completion().choices[0].message
    assert message.content == "Checking."
    extra = message.model_extra or {}
    assert extra["reasoning_content"] == SIGNED["thinking"]
    assert extra["reasoning_details"] == [SIGNED_DETAIL, REDACTED_DETAIL]

