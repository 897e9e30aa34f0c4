"""Unit tests of proxy.translate: one focused test per translation rule (no Django).

Run alone with: .venv/bin/pytest -p no:django --noconftest tests/test_translate.py
"""
from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import httpx
import orjson
import pytest

from proxy.errors import GatewayError
from proxy.modelspec import ModelSpec
from proxy.reservation import IMAGE_TOKENS_BOUND, estimate_input_tokens_upper_bound
from proxy.translation import (
    DEFAULT_MAX_TOKENS,
    JSON_MODE_NATIVE,
    JSON_TOOL_NAME,
    MAX_IMAGE_BYTES,
    Translated,
    Usage,
    anthropic_error_to_gateway,
    anthropic_stream_error,
    normalize_usage,
    openai_usage,
    translate_request,
    translate_response,
)
from proxy.upstream import RETRYABLE_STATUSES

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
REQUESTED = "anthropic/claude-sonnet-4-6"
SPEC = ModelSpec(public_id="claude-sonnet-4-6", upstream_id="claude-sonnet-4-6-upstream", max_output_tokens=64_000)
STRUCTURED = ModelSpec(public_id="s", upstream_id="s-up", structured_output=True)
PAIR_OK = ModelSpec(public_id="p", upstream_id="p-up", accepts_temperature_with_top_p=True)
FIXED_SAMPLING = ModelSpec(public_id="o", upstream_id="o-up", accepts_sampling=False)
NO_PREFILL = ModelSpec(public_id="n", upstream_id="n-up", prefill=False)
THINKING = ModelSpec(public_id="t", upstream_id="t-up", thinking_mode="enabled")
ADAPTIVE = ModelSpec(public_id="a", upstream_id="a-up", thinking_mode="adaptive", accepts_sampling=False)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 32

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}


def user(content="hi"):
    return {"role": "user", "content": content}


def assistant(content=None, tool_calls=None):
    message = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return message


def call(id_="call_1", name="get_weather", arguments='{"city": "Oslo"}'):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool(content="4 C", tool_call_id="call_1"):
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


def data_url(raw: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


def tr(spec: ModelSpec = SPEC, **body) -> Translated:
    body.setdefault("model", REQUESTED)
    body.setdefault("messages", [user()])
    return translate_request(body, spec, requested_model=REQUESTED)


def payload(spec: ModelSpec = SPEC, **body) -> dict:
    return tr(spec, **body).payload


def rejected(param: str | None, spec: ModelSpec = SPEC, **body) -> GatewayError:
    """Asserts a 400 in OpenAI's shape naming ``param``."""
    with pytest.raises(GatewayError) as caught:
        tr(spec, **body)
    err = caught.value
    assert err.status == 400, err.message
    assert err.param == param, (err.param, err.message)
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}
    assert err.type == "invalid_request_error"
    return err


# --- basics -----------------------------------------------------------------------------

def test_minimal_request():
    t = tr()
    assert t.payload == {"model": "claude-sonnet-4-6-upstream", "max_tokens": DEFAULT_MAX_TOKENS,
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                         "stream": False}
    assert (t.stream, t.include_usage, t.json_mode, t.requested_model, t.max_tokens, t.user) == (
        False, False, None, REQUESTED, DEFAULT_MAX_TOKENS, None)


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_body_must_be_an_object(body):
    with pytest.raises(GatewayError) as caught:
        translate_request(body, SPEC, requested_model=REQUESTED)
    assert caught.value.status == 400


@pytest.mark.parametrize("messages", [None, [], "hi", {"role": "user"}])
def test_messages_must_be_a_non_empty_list(messages):
    body = {"model": REQUESTED} if messages is None else {"model": REQUESTED, "messages": messages}
    with pytest.raises(GatewayError) as caught:
        translate_request(body, SPEC, requested_model=REQUESTED)
    assert caught.value.param == "messages"


def test_stream_is_copied_and_include_usage_read():
    t = tr(stream=True, stream_options={"include_usage": True})
    assert t.payload["stream"] is True and t.stream and t.include_usage
    assert tr(stream=True).include_usage is False


def test_stream_options_without_stream_rejected():
    rejected("stream_options", stream_options={"include_usage": True})


@pytest.mark.parametrize("options,param", [("yes", "stream_options"),
                                           ({"include_usage": "yes"}, "stream_options.include_usage")])
def test_stream_options_types(options, param):
    rejected(param, stream=True, stream_options=options)


def test_stream_must_be_boolean():
    rejected("stream", stream="true")


# --- messages -----------------------------------------------------------------------------

def test_system_and_developer_messages_are_hoisted_from_anywhere():
    p = payload(messages=[
        {"role": "system", "content": "Be terse."},
        user("a"),
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        user("b"),
    ])
    assert p["system"] == [{"type": "text", "text": "Be terse."}, {"type": "text", "text": "Use metric units."}]
    assert p["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                          {"type": "text", "text": "b"}]}]


def test_system_message_accepts_only_text_parts():
    rejected("messages[0].content[0]", messages=[
        {"role": "system", "content": [image_part(data_url(PNG))]}, user()])


def test_only_system_messages_rejected():
    rejected("messages", messages=[{"role": "system", "content": "x"}])


def test_consecutive_user_messages_are_merged():
    p = payload(messages=[user("a"), user("b")])
    assert p["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                          {"type": "text", "text": "b"}]}]


def test_consecutive_assistant_messages_are_merged():
    p = payload(messages=[user(), assistant("one"), assistant("two"), user("ok")])
    assert p["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "one"},
                                                                 {"type": "text", "text": "two"}]}


def test_tool_calls_become_tool_use_after_text():
    p = payload(messages=[user(), assistant("Checking.", [call()]), tool()], tools=[WEATHER_TOOL])
    assert p["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}}]}


def test_tool_message_becomes_tool_result():
    p = payload(messages=[user(), assistant(None, [call()]), tool("4 C")], tools=[WEATHER_TOOL])
    assert p["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "4 C"}]}


def test_tool_results_come_first_in_the_merged_user_turn():
    p = payload(messages=[user(), assistant(None, [call("call_1"), call("call_2", "get_time", "{}")]),
                          user("also this"), tool("a", "call_1"), tool("b", "call_2")],
                tools=[WEATHER_TOOL, TIME_TOOL])
    assert [b["type"] for b in p["messages"][2]["content"]] == ["tool_result", "tool_result", "text"]
    assert [b.get("tool_use_id") for b in p["messages"][2]["content"][:2]] == ["call_1", "call_2"]
    assert len(p["messages"]) == 3


def test_tool_result_content_parts():
    p = payload(messages=[user(), assistant(None, [call()]),
                          tool([{"type": "text", "text": "4 C"}, image_part(data_url(PNG))])],
                tools=[WEATHER_TOOL])
    content = p["messages"][2]["content"][0]["content"]
    assert content[0] == {"type": "text", "text": "4 C"}
    assert content[1]["type"] == "image"


def test_empty_tool_result_has_no_content():
    p = payload(messages=[user(), assistant(None, [call()]), tool("")], tools=[WEATHER_TOOL])
    assert p["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1"}]


@pytest.mark.parametrize("tool_call_id", [None, "", 7])
def test_tool_message_needs_a_tool_call_id(tool_call_id):
    rejected("messages[2].tool_call_id", messages=[user(), assistant(None, [call()]), tool("x", tool_call_id)],
             tools=[WEATHER_TOOL])


def test_foreign_tool_ids_are_rewritten_consistently():
    p = payload(messages=[user(), assistant(None, [call("functions.get_weather:0"), call("functions.get_weather:1")]),
                          tool("a", "functions.get_weather:0"), tool("b", "functions.get_weather:1")],
                tools=[WEATHER_TOOL])
    uses = [b["id"] for b in p["messages"][1]["content"]]
    results = [b["tool_use_id"] for b in p["messages"][2]["content"]]
    assert uses == results and len(set(uses)) == 2
    assert all(all(c.isalnum() or c in "_-" for c in id_) for id_ in uses)


def test_bad_tool_call_arguments_rejected():
    err = rejected("messages[1].tool_calls[0].function.arguments",
                   messages=[user(), assistant(None, [call(arguments="{not json")])], tools=[WEATHER_TOOL])
    assert "JSON" in err.message


@pytest.mark.parametrize("arguments", ["[1, 2]", '"text"', "3", 5, None])
def test_tool_call_arguments_must_be_an_object(arguments):
    rejected("messages[1].tool_calls[0].function.arguments",
             messages=[user(), assistant(None, [call(arguments=arguments)])], tools=[WEATHER_TOOL])


def test_empty_tool_call_arguments_mean_no_input():
    p = payload(messages=[user(), assistant(None, [call(name="get_time", arguments="")])], tools=[TIME_TOOL])
    assert p["messages"][1]["content"][0]["input"] == {}


def test_tool_call_name_validated():
    rejected("messages[1].tool_calls[0].function.name",
             messages=[user(), assistant(None, [call(name="bad name!")])], tools=[WEATHER_TOOL])


def test_tool_calls_must_be_a_list():
    rejected("messages[1].tool_calls", messages=[user(), assistant(None, call())])


def test_echoed_sdk_assistant_message_with_null_fields_is_accepted():
    echoed = {"role": "assistant", "content": "Hello", "refusal": None, "annotations": [], "audio": None,
              "function_call": None, "tool_calls": None}
    p = payload(messages=[user(), echoed, user("more")])
    assert p["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}


def test_deprecated_function_call_on_assistant_rejected():
    rejected("messages[1].function_call", messages=[
        user(), {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}}])


def test_deprecated_function_role_rejected():
    rejected("messages[1].role", messages=[user(), {"role": "function", "name": "f", "content": "x"}])


@pytest.mark.parametrize("role", ["robot", None, 3, ["user"]])
def test_unknown_role_rejected(role):
    rejected("messages[0].role", messages=[{"role": role, "content": "x"}])


@pytest.mark.parametrize("content", ["", "   ", [], None, [{"type": "text", "text": " "}]])
def test_empty_user_message_rejected(content):
    err = rejected("messages[0].content", messages=[user(content)])
    assert "non-empty" in err.message


def test_empty_assistant_message_is_dropped():
    p = payload(messages=[user("a"), assistant(""), user("b")])
    assert p["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                          {"type": "text", "text": "b"}]}]


def test_whitespace_text_parts_are_skipped():
    p = payload(messages=[user([{"type": "text", "text": "  "}, {"type": "text", "text": "x"}])])
    assert p["messages"][0]["content"] == [{"type": "text", "text": "x"}]


def test_refusal_part_in_assistant_becomes_text():
    p = payload(messages=[user(), assistant([{"type": "refusal", "refusal": "I can't."}]), user("ok")])
    assert p["messages"][1]["content"] == [{"type": "text", "text": "I can't."}]


@pytest.mark.parametrize("content,param", [
    (5, "messages[0].content"),
    ({"type": "text", "text": "x"}, "messages[0].content"),
    (["x"], "messages[0].content[0]"),
    ([{"text": "x"}], "messages[0].content[0]"),
    ([{"type": "text", "text": 5}], "messages[0].content[0].text"),
    ([{"type": "video", "video": {}}], "messages[0].content[0]"),
])
def test_malformed_content_rejected(content, param):
    rejected(param, messages=[user(content)])


@pytest.mark.parametrize("part", [
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
])
def test_audio_and_file_parts_rejected(part):
    err = rejected("messages[0].content[1]", messages=[user([{"type": "text", "text": "x"}, part])])
    assert "not supported" in err.message


def test_image_in_assistant_message_rejected():
    rejected("messages[1].content[0]", messages=[user(), assistant([image_part(data_url(PNG))])])


def test_message_must_be_an_object():
    rejected("messages[0]", messages=["hi"])


def test_assistant_first_conversation_is_passed_on():
    p = payload(messages=[assistant("Hello, how can I help?"), user("hi")])
    assert [m["role"] for m in p["messages"]] == ["assistant", "user"]


# --- prefill ------------------------------------------------------------------------------

def test_prefill_trailing_whitespace_stripped():
    p = payload(messages=[user(), assistant("The answer is ")])
    assert p["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "The answer is"}]}


def test_prefill_rejected_where_unsupported():
    err = rejected("messages", NO_PREFILL, messages=[user(), assistant("{")])
    assert "prefill" in err.message


# --- images ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,media_type", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                            (WEBP, "image/webp")])
def test_data_url_image_becomes_base64_source(raw, media_type):
    url = data_url(raw, media_type)
    p = payload(messages=[user([{"type": "text", "text": "what?"}, image_part(url)])])
    assert p["messages"][0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": media_type, "data": base64.b64encode(raw).decode()}}


def test_image_media_type_comes_from_the_bytes():
    for declared in ("image/jpeg", "image/jpg"):
        p = payload(messages=[user([image_part(data_url(PNG, declared))])])
        assert p["messages"][0]["content"][0]["source"]["media_type"] == "image/png"


@pytest.mark.parametrize("url", ["https://example.com/cat.jpg", "http://example.com/cat.png"])
def test_http_image_becomes_url_source(url):
    p = payload(messages=[user([image_part(url)])])
    assert p["messages"][0]["content"][0] == {"type": "image", "source": {"type": "url", "url": url}}


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "cat.png", "", "file:///etc/passwd"])
def test_other_image_urls_rejected(url):
    rejected("messages[0].content[0].image_url.url", messages=[user([image_part(url)])])


@pytest.mark.parametrize("media_type", ["image/bmp", "image/svg+xml", "application/pdf", "text/plain"])
def test_unsupported_image_media_type_rejected(media_type):
    err = rejected("messages[0].content[0].image_url.url", messages=[user([image_part(data_url(PNG, media_type))])])
    assert "image/jpeg" in err.message


@pytest.mark.parametrize("url", ["data:image/png;base64,!!!notbase64!!!", "data:image/png;base64,iVBORw0KGgo",
                                 "data:image/png;base64,iVBO Rw0K", "data:image/png;base64,ü"])
def test_bad_base64_rejected(url):
    err = rejected("messages[0].content[0].image_url.url", messages=[user([image_part(url)])])
    assert "base64" in err.message


def test_non_base64_data_url_rejected():
    rejected("messages[0].content[0].image_url.url", messages=[user([image_part("data:image/png,rawbytes")])])


def test_bytes_that_are_no_image_rejected():
    rejected("messages[0].content[0].image_url.url", messages=[user([image_part(data_url(b"hello world"))])])


def test_image_up_to_5_mb_accepted_and_larger_rejected():
    at_limit = PNG + b"\x00" * (MAX_IMAGE_BYTES - len(PNG))
    payload(messages=[user([image_part(data_url(at_limit))])])
    err = rejected("messages[0].content[0].image_url.url",
                   messages=[user([image_part(data_url(at_limit + b"\x00"))])])
    assert "5 MB" in err.message


def test_image_url_must_be_a_string():
    rejected("messages[0].content[0].image_url.url", messages=[user([{"type": "image_url", "image_url": {"url": 5}}])])


# --- max tokens ----------------------------------------------------------------------------

def test_max_tokens_default():
    assert payload()["max_tokens"] == 1024


def test_max_tokens_used():
    assert payload(max_tokens=300)["max_tokens"] == 300


def test_max_completion_tokens_preferred():
    t = tr(max_completion_tokens=200, max_tokens=300)
    assert t.payload["max_tokens"] == t.max_tokens == 200


def test_max_tokens_capped_at_model_maximum():
    t = tr(ModelSpec(public_id="h", upstream_id="h", max_output_tokens=8192), max_tokens=100_000)
    assert t.payload["max_tokens"] == t.max_tokens == 8192


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "100", True])
def test_invalid_max_tokens_rejected(field, value):
    rejected(field, **{field: value})


# --- sampling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 0.2, 1])
def test_temperature_in_range_passes(value):
    assert payload(temperature=value)["temperature"] == value


@pytest.mark.parametrize("value", [1.5, 2, -0.1])
def test_temperature_out_of_range_rejected(value):
    err = rejected("temperature", temperature=value)
    assert "between 0 and 1 for Claude models" in err.message


@pytest.mark.parametrize("value", ["hot", True, [1], float("nan")])
def test_temperature_must_be_a_number(value):
    rejected("temperature", temperature=value)


def test_top_p_passes_alone():
    assert payload(top_p=0.9)["top_p"] == 0.9


@pytest.mark.parametrize("value", [1.1, -0.5, "x"])
def test_top_p_validated(value):
    rejected("top_p", top_p=value)


def test_noop_top_p_dropped_next_to_temperature():
    p = payload(temperature=0.3, top_p=1)
    assert p["temperature"] == 0.3 and "top_p" not in p


def test_temperature_with_top_p_rejected_where_the_model_refuses_the_pair():
    err = rejected("top_p", temperature=0.3, top_p=0.9)
    assert "temperature" in err.message and "top_p" in err.message


def test_temperature_with_top_p_passed_where_accepted():
    p = payload(PAIR_OK, temperature=0.3, top_p=0.9)
    assert (p["temperature"], p["top_p"]) == (0.3, 0.9)


@pytest.mark.parametrize("field", ["temperature", "top_p"])
def test_fixed_sampling_model_rejects_non_default_values(field):
    rejected(field, FIXED_SAMPLING, **{field: 0.5})


def test_fixed_sampling_model_drops_default_values():
    p = payload(FIXED_SAMPLING, temperature=1, top_p=1)
    assert "temperature" not in p and "top_p" not in p


def test_fixed_sampling_model_rejects_top_k():
    rejected("top_k", FIXED_SAMPLING, top_k=5)


def test_top_k_extension_passed_through():
    assert payload(top_k=40)["top_k"] == 40


@pytest.mark.parametrize("value", [-1, 2.5, "5", True])
def test_top_k_validated(value):
    rejected("top_k", top_k=value)


# --- stop ------------------------------------------------------------------------------------

def test_stop_string_becomes_list():
    assert payload(stop="\n\nUser:")["stop_sequences"] == ["\n\nUser:"]


def test_stop_list_passed():
    assert payload(stop=["a", "b", "c", "d"])["stop_sequences"] == ["a", "b", "c", "d"]


def test_empty_stop_list_omitted():
    assert "stop_sequences" not in payload(stop=[])


def test_more_than_four_stops_rejected():
    rejected("stop", stop=["a", "b", "c", "d", "e"])


@pytest.mark.parametrize("stop", ["  ", ["a", "\n"], [""]])
def test_whitespace_stop_rejected(stop):
    rejected("stop", stop=stop)


@pytest.mark.parametrize("stop", [5, ["a", 5], {"a": 1}])
def test_stop_wrong_type_rejected(stop):
    rejected("stop", stop=stop)


# --- tools -------------------------------------------------------------------------------------

def test_tools_translated():
    p = payload(tools=[WEATHER_TOOL, TIME_TOOL])
    assert p["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in p


def test_tool_strict_flag_not_forwarded():
    tool_ = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}
    assert "strict" not in payload(tools=[tool_])["tools"][0]


def test_tool_schema_without_type_is_an_object():
    tool_ = {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {}}}}}
    assert payload(tools=[tool_])["tools"][0]["input_schema"] == {"type": "object", "properties": {"a": {}}}


def test_tool_schema_must_be_an_object_schema():
    tool_ = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    rejected("tools[0].function.parameters", tools=[tool_])


@pytest.mark.parametrize("name", ["has space", "", "x" * 65, "dot.name", None, 5])
def test_tool_name_validated(name):
    rejected("tools[0].function.name", tools=[{"type": "function", "function": {"name": name}}])


def test_duplicate_tool_names_rejected():
    rejected("tools[1].function.name", tools=[WEATHER_TOOL, WEATHER_TOOL])


@pytest.mark.parametrize("tool_", [{"type": "custom", "custom": {"name": "x"}}, {"function": {"name": "x"}}])
def test_non_function_tools_rejected(tool_):
    rejected("tools[0].type", tools=[tool_])


@pytest.mark.parametrize("tools,param", [({"a": 1}, "tools"), (["x"], "tools[0]"),
                                         ([{"type": "function", "function": "f"}], "tools[0].function")])
def test_malformed_tools_rejected(tools, param):
    rejected(param, tools=tools)


@pytest.mark.parametrize("choice,expected", [("auto", {"type": "auto"}), ("required", {"type": "any"}),
                                             ("none", {"type": "none"})])
def test_tool_choice_strings(choice, expected):
    assert payload(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_named_tool_choice():
    choice = {"type": "function", "function": {"name": "get_weather"}}
    assert payload(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_named_tool_choice_must_name_a_tool():
    rejected("tool_choice", tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}})


@pytest.mark.parametrize("choice", ["always", 5, {"type": "allowed_tools"}, {"type": "function"}])
def test_invalid_tool_choice_rejected(choice):
    rejected("tool_choice", tools=[WEATHER_TOOL], tool_choice=choice)


@pytest.mark.parametrize("choice", ["auto", "required", {"type": "function", "function": {"name": "x"}}])
def test_tool_choice_without_tools_rejected(choice):
    rejected("tool_choice", tool_choice=choice)


def test_tool_choice_none_without_tools_dropped():
    assert "tool_choice" not in payload(tool_choice="none")


def test_parallel_tool_calls_false_creates_auto_choice():
    assert payload(tools=[WEATHER_TOOL], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}


def test_parallel_tool_calls_false_on_given_choice():
    assert payload(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)["tool_choice"] == {
        "type": "any", "disable_parallel_tool_use": True}


def test_parallel_tool_calls_false_not_with_none():
    assert payload(tools=[WEATHER_TOOL], tool_choice="none", parallel_tool_calls=False)["tool_choice"] == {
        "type": "none"}


def test_parallel_tool_calls_true_is_the_default():
    assert "tool_choice" not in payload(tools=[WEATHER_TOOL], parallel_tool_calls=True)


def test_parallel_tool_calls_must_be_boolean():
    rejected("parallel_tool_calls", tools=[WEATHER_TOOL], parallel_tool_calls="no")


def test_tool_history_without_tools_gets_stub_tools_and_no_tool_use():
    p = payload(messages=[user(), assistant(None, [call()]), tool(), user("thanks")])
    assert [t_["name"] for t_ in p["tools"]] == ["get_weather"]
    assert p["tools"][0]["input_schema"] == {"type": "object"}
    assert p["tool_choice"] == {"type": "none"}


# --- response_format ------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


def test_response_format_text_is_a_noop():
    t = tr(response_format={"type": "text"})
    assert t.json_mode is None and "tools" not in t.payload and "output_config" not in t.payload


def test_json_schema_native_on_structured_output_models():
    t = tr(STRUCTURED, response_format=JSON_SCHEMA_FORMAT)
    assert t.json_mode == JSON_MODE_NATIVE and t.json_tool is None
    assert t.payload["output_config"] == {"format": {"type": "json_schema", "schema": SCHEMA}}
    assert "tools" not in t.payload and "tool_choice" not in t.payload


def test_json_schema_native_combines_with_tools():
    t = tr(STRUCTURED, response_format=JSON_SCHEMA_FORMAT, tools=[WEATHER_TOOL])
    assert t.payload["tools"][0]["name"] == "get_weather" and "output_config" in t.payload


def test_json_schema_forced_tool_elsewhere():
    t = tr(response_format=JSON_SCHEMA_FORMAT)
    assert t.json_mode == t.json_tool == JSON_TOOL_NAME
    assert t.payload["tools"] == [{"name": JSON_TOOL_NAME, "description": "Respond with the answer as this JSON object.",
                                   "input_schema": SCHEMA}]
    assert t.payload["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    assert "output_config" not in t.payload


@pytest.mark.parametrize("spec", [SPEC, STRUCTURED])
def test_json_object_uses_a_forced_permissive_tool_on_every_model(spec):
    t = tr(spec, response_format={"type": "json_object"})
    assert t.json_tool == JSON_TOOL_NAME
    assert t.payload["tools"][0]["input_schema"] == {"type": "object", "additionalProperties": True}
    assert t.payload["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}


def test_emulated_json_mode_with_tools_rejected():
    rejected("response_format", response_format={"type": "json_object"}, tools=[WEATHER_TOOL])


@pytest.mark.parametrize("fmt,param", [
    ({"type": "json_schema"}, "response_format.json_schema"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}}, "response_format.json_schema.schema"),
    ({"type": "xml"}, "response_format"),
    ("json", "response_format"),
])
def test_malformed_response_format_rejected(fmt, param):
    rejected(param, response_format=fmt)


def test_emulated_json_schema_needs_an_object_root():
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}
    rejected("response_format.json_schema.schema", response_format=fmt)


# --- user -------------------------------------------------------------------------------------------

def test_user_becomes_metadata_user_id():
    t = tr(user="user-4711")
    assert t.payload["metadata"] == {"user_id": "user-4711"} and t.user == "user-4711"


@pytest.mark.parametrize("value", ["jane.doe@example.com", "+1 (555) 123-4567", "0049 30 1234567"])
def test_pii_user_is_stored_but_not_sent(value):
    t = tr(user=value)
    assert "metadata" not in t.payload and t.user == value


def test_safety_identifier_used_when_user_absent():
    t = tr(safety_identifier="hash-abc")
    assert t.payload["metadata"] == {"user_id": "hash-abc"} and t.user == "hash-abc"


@pytest.mark.parametrize("value", [5, "x" * 257])
def test_user_validated(value):
    rejected("user", user=value)


# --- unsupported and unknown fields ------------------------------------------------------------------

def test_n_above_one_rejected():
    err = rejected("n", n=2)
    assert "n>1" in err.message


def test_n_one_accepted():
    tr(n=1)


@pytest.mark.parametrize("value", [0, "2", 1.0, True])
def test_n_validated(value):
    rejected("n", n=value)


@pytest.mark.parametrize("field,value", [("logprobs", True), ("top_logprobs", 3), ("presence_penalty", 0.5),
                                         ("frequency_penalty", -1), ("logit_bias", {"50256": -100}),
                                         ("audio", {"voice": "alloy", "format": "wav"}),
                                         ("modalities", ["text", "audio"]), ("web_search_options", {}),
                                         ("functions", [{"name": "f"}]), ("function_call", "auto"),
                                         ("verbosity", "low")])
def test_fields_claude_cannot_honour_rejected(field, value):
    rejected(field, **{field: value})


@pytest.mark.parametrize("field,value", [("logprobs", False), ("top_logprobs", 0), ("presence_penalty", 0),
                                         ("frequency_penalty", 0.0), ("logit_bias", {}), ("modalities", ["text"]),
                                         ("seed", 42), ("store", True), ("metadata", {"a": "b"}),
                                         ("service_tier", "auto"), ("prompt_cache_key", "k"),
                                         ("prediction", {"type": "content", "content": "x"}),
                                         ("verbosity", "medium"), ("reasoning_effort", "none")])
def test_harmless_fields_accepted_and_not_forwarded(field, value):
    p = payload(**{field: value})
    assert set(p) == {"model", "max_tokens", "messages", "stream"}


def test_seed_must_be_an_integer():
    rejected("seed", seed="42")


def test_unknown_field_rejected():
    err = rejected("temprature", temprature=0.5)
    assert err.message == "Unrecognized request argument supplied: temprature"


# --- reasoning_effort -> thinking -------------------------------------------------------------------

def test_reasoning_effort_rejected_on_models_without_thinking():
    rejected("reasoning_effort", reasoning_effort="high")


def test_reasoning_effort_value_validated():
    rejected("reasoning_effort", THINKING, reasoning_effort="extreme")


def test_reasoning_effort_maps_to_thinking_with_room_for_the_answer():
    t = tr(THINKING, reasoning_effort="low")
    assert t.payload["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert t.payload["max_tokens"] == t.max_tokens == 1024 + DEFAULT_MAX_TOKENS


def test_reasoning_budget_fits_under_an_explicit_max():
    t = tr(THINKING, reasoning_effort="high", max_completion_tokens=1500)
    assert t.payload["thinking"]["budget_tokens"] == 1499 and t.payload["max_tokens"] == 1500


def test_reasoning_needs_an_explicit_max_above_the_minimum_budget():
    rejected("max_completion_tokens", THINKING, reasoning_effort="low", max_completion_tokens=1024)


@pytest.mark.parametrize("extra,param", [({"temperature": 0.5}, "temperature"), ({"top_k": 5}, "top_k"),
                                         ({"top_p": 0.5}, "top_p"),
                                         ({"tools": [WEATHER_TOOL], "tool_choice": "required"}, "tool_choice"),
                                         ({"response_format": {"type": "json_object"}}, "response_format")])
def test_reasoning_conflicts_rejected(extra, param):
    rejected(param, THINKING, reasoning_effort="medium", **extra)


def test_reasoning_with_default_temperature_drops_it():
    p = payload(THINKING, reasoning_effort="medium", temperature=1)
    assert "temperature" not in p and "thinking" in p


def test_reasoning_with_prefill_rejected():
    rejected("messages", THINKING, reasoning_effort="medium", messages=[user(), assistant("{")])


def test_reasoning_dropped_when_the_last_assistant_turn_called_tools():
    p = payload(THINKING, reasoning_effort="medium", tools=[WEATHER_TOOL],
                messages=[user(), assistant(None, [call()]), tool()])
    assert "thinking" not in p and p["max_tokens"] == DEFAULT_MAX_TOKENS


# --- robustness -----------------------------------------------------------------------------------------

RICH_BODY = {
    "model": REQUESTED,
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "hi"}, image_part(data_url(PNG))]},
        {"role": "assistant", "content": "ok", "tool_calls": [call()]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "4 C"}]},
    ],
    "tools": [WEATHER_TOOL],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "max_completion_tokens": 100,
    "temperature": 0.5,
    "stop": ["x"],
    "stream": True,
    "stream_options": {"include_usage": True},
    "user": "u1",
    "response_format": {"type": "text"},
    "n": 1,
    "reasoning_effort": "none",
}
WRONG_VALUES = [None, 0, -1, 1.5, True, "", "x", [], {}, [1], {"a": 1}, [{}], float("inf")]


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _replaced(body, path, new):
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return body


@pytest.mark.parametrize("spec", [SPEC, STRUCTURED, FIXED_SAMPLING, THINKING])
def test_no_malformed_body_escapes_as_anything_but_a_400(spec):
    """Every value anywhere in a rich body, replaced by every wrong type: a 400 or a
    payload orjson can serialise — never KeyError/TypeError/ValueError."""
    for path in list(_paths(RICH_BODY))[1:]:
        for wrong in WRONG_VALUES:
            body = _replaced(RICH_BODY, path, wrong)
            try:
                t = translate_request(body, spec, requested_model=REQUESTED)
            except GatewayError as err:
                assert err.status == 400 and err.message, (path, wrong)
                continue
            orjson.dumps(t.payload)
            estimate_input_tokens_upper_bound(t.payload)


# --- input token upper bound ----------------------------------------------------------------------------

def test_estimate_bounds_text_by_utf8_bytes():
    text = "é" * 1000  # 2,000 UTF-8 bytes
    assert estimate_input_tokens_upper_bound(payload(messages=[user(text)])) >= 2000


def test_estimate_counts_system_tools_and_history():
    base = estimate_input_tokens_upper_bound(payload())
    with_system = estimate_input_tokens_upper_bound(payload(messages=[{"role": "system", "content": "s" * 500}, user()]))
    with_tools = estimate_input_tokens_upper_bound(payload(tools=[WEATHER_TOOL]))
    history = payload(messages=[user(), assistant(None, [call(arguments=json.dumps({"q": "z" * 300}))]),
                                tool("r" * 400)], tools=[WEATHER_TOOL])
    assert with_system >= base + 500
    assert with_tools >= base + len(orjson.dumps(payload(tools=[WEATHER_TOOL])["tools"]))
    assert estimate_input_tokens_upper_bound(history) >= with_tools + 700


def test_estimate_uses_a_fixed_bound_per_image_not_its_bytes():
    big = PNG + b"\x00" * 1_000_000
    one = estimate_input_tokens_upper_bound(payload(messages=[user([image_part(data_url(big))])]))
    two = estimate_input_tokens_upper_bound(payload(messages=[user([image_part(data_url(big)),
                                                                    image_part("https://x.test/a.png")])]))
    assert IMAGE_TOKENS_BOUND <= one < IMAGE_TOKENS_BOUND + 200
    assert two - one >= IMAGE_TOKENS_BOUND


def test_estimate_counts_a_native_output_schema():
    plain = estimate_input_tokens_upper_bound(payload(STRUCTURED))
    native = estimate_input_tokens_upper_bound(payload(STRUCTURED, response_format=JSON_SCHEMA_FORMAT))
    assert native >= plain + len(orjson.dumps(SCHEMA))


# --- responses --------------------------------------------------------------------------------------------

def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _message(content, stop_reason="end_turn", usage=None):
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
            "usage": usage or {"input_tokens": 10, "output_tokens": 5}}


def test_text_response_fixture():
    out = translate_response(_fixture("message_text.json")["body"], tr(), completion_id="chatcmpl-abc", created=1700)
    assert out["id"] == "chatcmpl-abc" and out["object"] == "chat.completion" and out["created"] == 1700
    assert out["model"] == REQUESTED
    choice = out["choices"][0]
    assert choice == {"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude.", "refusal": None},
                      "logprobs": None, "finish_reason": "stop"}
    assert out["usage"]["prompt_tokens"] == 2095 and out["usage"]["completion_tokens"] == 503
    assert out["usage"]["total_tokens"] == 2598


def test_tool_use_response():
    msg = _message([{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}], "tool_use")
    out = translate_response(msg, tr(tools=[WEATHER_TOOL, TIME_TOOL]), completion_id="c", created=1)
    message = out["choices"][0]["message"]
    assert message["content"] == "Checking."
    assert message["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    assert out["choices"][0]["finish_reason"] == "tool_calls"


def test_response_without_text_has_null_content():
    msg = _message([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}], "tool_use")
    assert translate_response(msg, tr(), completion_id="c", created=1)["choices"][0]["message"]["content"] is None


def test_text_blocks_joined_and_thinking_ignored():
    msg = _message([{"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "A"}, {"type": "text", "text": "B"}])
    message = translate_response(msg, tr(), completion_id="c", created=1)["choices"][0]["message"]
    assert message["content"] == "AB" and "tool_calls" not in message


@pytest.mark.parametrize("stop_reason,finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
    (None, "stop"), ("something_new", "stop")])
def test_finish_reasons(stop_reason, finish_reason):
    out = translate_response(_message([{"type": "text", "text": "x"}], stop_reason), tr(), completion_id="c", created=1)
    assert out["choices"][0]["finish_reason"] == finish_reason


def test_emulated_json_mode_returns_the_tool_input_as_content():
    t = tr(response_format={"type": "json_object"})
    msg = _message([{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL_NAME, "input": {"a": [1, "é"]}}], "tool_use")
    out = translate_response(msg, t, completion_id="c", created=1)
    message = out["choices"][0]["message"]
    assert message["content"] == '{"a":[1,"é"]}' and "tool_calls" not in message
    assert json.loads(message["content"]) == {"a": [1, "é"]}
    assert out["choices"][0]["finish_reason"] == "stop"


def test_emulated_json_mode_ignores_stray_text():
    t = tr(response_format={"type": "json_object"})
    msg = _message([{"type": "text", "text": "Here you go:"},
                    {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL_NAME, "input": {"a": 1}}], "tool_use")
    assert translate_response(msg, t, completion_id="c", created=1)["choices"][0]["message"]["content"] == '{"a":1}'


def test_emulated_json_mode_cut_short_is_length():
    t = tr(response_format={"type": "json_object"})
    msg = _message([{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL_NAME, "input": {"a": 1}}], "max_tokens")
    assert translate_response(msg, t, completion_id="c", created=1)["choices"][0]["finish_reason"] == "length"


def test_native_json_mode_returns_text_content():
    t = tr(STRUCTURED, response_format=JSON_SCHEMA_FORMAT)
    out = translate_response(_message([{"type": "text", "text": '{"answer": "42"}'}]), t, completion_id="c", created=1)
    assert json.loads(out["choices"][0]["message"]["content"]) == {"answer": "42"}


# --- usage -------------------------------------------------------------------------------------------------

def test_usage_uses_the_cache_ttl_split():
    u = normalize_usage({"input_tokens": 238, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1024,
                         "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
                         "output_tokens": 41})
    assert u == Usage(input_tokens=238, cache_write_5m=100, cache_write_1h=200, cache_read=1024, output_tokens=41)


def test_cache_writes_without_split_are_5m():
    u = normalize_usage({"input_tokens": 5, "cache_creation_input_tokens": 300, "output_tokens": 1})
    assert (u.cache_write_5m, u.cache_write_1h) == (300, 0)


def test_split_short_of_the_total_bills_the_rest_as_5m():
    u = normalize_usage({"cache_creation_input_tokens": 300,
                         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 100}})
    assert (u.cache_write_5m, u.cache_write_1h) == (200, 100)


def test_openai_usage_counts_every_input_class_exactly_once():
    raw = {"input_tokens": 238, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1024,
           "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}, "output_tokens": 41}
    u = normalize_usage(raw)
    assert u.input_tokens + u.cache_write_5m + u.cache_write_1h + u.cache_read == 238 + 300 + 1024
    assert openai_usage(u) == {
        "prompt_tokens": 1562, "completion_tokens": 41, "total_tokens": 1603,
        "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 300, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}}


@pytest.mark.parametrize("raw", [None, {}, {"input_tokens": None, "cache_creation_input_tokens": None,
                                            "cache_read_input_tokens": None, "cache_creation": None,
                                            "output_tokens": None}, "garbage", {"input_tokens": True}])
def test_usage_tolerates_missing_and_null_fields(raw):
    assert normalize_usage(raw) == Usage()


def test_later_usage_supersedes_present_fields_only():
    start = normalize_usage({"input_tokens": 25, "cache_read_input_tokens": 7, "output_tokens": 1,
                             "cache_creation_input_tokens": 50,
                             "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30}})
    merged = start.merge({"output_tokens": 15, "input_tokens": None})
    assert merged == Usage(input_tokens=25, cache_write_5m=20, cache_write_1h=30, cache_read=7, output_tokens=15)
    merged = start.merge({"output_tokens": 15, "input_tokens": 40, "cache_read_input_tokens": 9,
                          "cache_creation_input_tokens": 60})
    assert merged == Usage(input_tokens=40, cache_write_5m=30, cache_write_1h=30, cache_read=9, output_tokens=15)


# --- upstream errors --------------------------------------------------------------------------------------------

def _anthropic_error(kind: str, message: str, **extra) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message, **extra}, "request_id": "req_1"})


def test_upstream_400_passes_the_message():
    err = anthropic_error_to_gateway(400, _anthropic_error("invalid_request_error", "messages: bad"), {})
    assert (err.status, err.type, err.message) == (400, "invalid_request_error", "messages: bad")


@pytest.mark.parametrize("status,kind", [(401, "authentication_error"), (403, "permission_error")])
def test_upstream_auth_failure_is_the_gateways_problem(status, kind):
    err = anthropic_error_to_gateway(status, _anthropic_error(kind, "invalid x-api-key sk-ant-secret"), {})
    assert err.status == 502 and err.type == "server_error"
    assert "sk-ant" not in err.message and "upstream credentials" in err.message
    assert err.headers["x-should-retry"] == "false"


def test_upstream_not_found_is_model_not_found_with_hint():
    err = anthropic_error_to_gateway(404, _anthropic_error("not_found_error", "model: claude-3-5-sonnet-latest"), {},
                                     not_found_hint="Use anthropic/claude-sonnet-4-6 instead.")
    assert (err.status, err.code) == (404, "model_not_found")
    assert "claude-3-5-sonnet-latest" in err.message and err.message.endswith("Use anthropic/claude-sonnet-4-6 instead.")


def test_upstream_413_with_an_html_body():
    err = anthropic_error_to_gateway(413, b"<html>Request Entity Too Large</html>", {})
    assert (err.status, err.code) == (413, "request_too_large")


@pytest.mark.parametrize("headers", [httpx.Headers({"Retry-After": "7", "retry-after-ms": "7000"}),
                                     {"Retry-After": "7", "retry-after-ms": "7000"}])
def test_upstream_429_is_a_rate_limit_with_retry_after(headers):
    err = anthropic_error_to_gateway(429, _anthropic_error("rate_limit_error", "org org-123 over limit"), headers)
    assert (err.status, err.type, err.code) == (429, "requests", "rate_limit_exceeded")
    assert err.headers == {"retry-after": "7", "retry-after-ms": "7000"}
    assert "org-123" not in err.message


def test_upstream_429_maps_by_status_even_without_a_json_body():
    err = anthropic_error_to_gateway(429, b"Too Many Requests", {"retry-after": "2"})
    assert (err.status, err.type, err.code, err.headers) == (429, "requests", "rate_limit_exceeded",
                                                             {"retry-after": "2"})


def test_upstream_spend_limit_429_is_not_retryable():
    body = _anthropic_error("rate_limit_error", "spend", details={"error_code": "enforced_spend_limit_reached"})
    err = anthropic_error_to_gateway(429, body, {})
    assert err.status == 429 and err.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("status,expected", [(500, (502, "server_error", "upstream_error")),
                                             (529, (503, "server_error", "overloaded")),
                                             (503, (503, "server_error", "overloaded")),
                                             (504, (504, "server_error", "timeout")),
                                             (402, (502, "server_error", "upstream_billing_error")),
                                             (418, (502, "server_error", "upstream_error"))])
def test_upstream_server_errors(status, expected):
    err = anthropic_error_to_gateway(status, b"not json", {"retry-after": "3"})
    assert (err.status, err.type, err.code) == expected
    assert err.headers.get("retry-after") == "3"


def test_upstream_error_body_as_dict_or_none():
    assert anthropic_error_to_gateway(400, {"error": {"type": "invalid_request_error", "message": "m"}}).message == "m"
    assert anthropic_error_to_gateway(400, None).status == 400


def test_recorded_error_statuses_map_to_openai_statuses():
    expected = {"400": 400, "401": 502, "403": 502, "404": 404, "413": 413, "429": 429, "500": 502, "529": 503}
    for status, kind in _fixture("errors.json")["by_status"].items():
        err = anthropic_error_to_gateway(int(status), _anthropic_error(kind, "x"), {})
        assert err.status == expected[status], status


def test_stream_error_event_mapping():
    err = anthropic_stream_error(_fixture("errors.json")["sse_error_event"][1])
    assert (err.type, err.code, err.param) == ("server_error", "overloaded", None)
    assert anthropic_stream_error({"type": "error", "error": {"type": "brand_new"}}).code == "upstream_error"


@pytest.mark.parametrize("status,retry", [(408, True), (409, True), (429, True), (500, True), (502, True), (503, True),
                                          (504, True), (529, True), (400, False), (401, False), (404, False),
                                          (413, False)])
def test_is_retryable(status, retry):
    assert (status in RETRYABLE_STATUSES) is retry


@pytest.mark.parametrize("base_url", ["http://upstream.test/anthropic", "http://upstream.test:8081"])
def test_upstream_keeps_no_cookies_between_calls(monkeypatch, settings, base_url):
    """One pool serves every team: a cookie an upstream response sets is not sent on later calls
    (and the base URL's path prefix is kept when the request URL is built)."""
    import asyncio

    import httpx

    from proxy import upstream

    settings.ANTHROPIC_BASE_URL = base_url
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("cookie")))
        return httpx.Response(200, json={}, headers={"set-cookie": "__cf_bm=team-a; Path=/; Domain=upstream.test"})

    monkeypatch.setattr(upstream, "_transport", lambda limits: httpx.MockTransport(answer))

    async def two_calls():
        pool = upstream.Upstream()
        for path in ("/v1/messages", "/v1/messages?beta=true"):
            response = await pool.open_messages(b"{}", None, path)
            await response.aclose()
        await pool.close()

    asyncio.run(two_calls())
    assert seen == [(f"{base_url}/v1/messages", None), (f"{base_url}/v1/messages?beta=true", None)]
