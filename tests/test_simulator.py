"""The Anthropic simulator speaks the real wire format: the official SDK parses it.

Runs without Django: ``pytest -p no:django tests/test_simulator.py``.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from itertools import groupby
from pathlib import Path

import anthropic
import httpx
import orjson
import pytest
import uvicorn

from simulator import server as simulator

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"  # copies of shared/ (checked in test_streaming)
MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer"},
        },
        "required": ["location"],
    },
}
TIME = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
}


def running_simulator():
    """Serve ``simulator.app`` in this process on a free port; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        simulator.app, loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"{url}/healthz").text == "ok":
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture(scope="module")
def base_url():
    yield from running_simulator()


@pytest.fixture(scope="module")
def client(base_url):
    return anthropic.Anthropic(api_key="sk-test", base_url=base_url, max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def unique(text: str) -> str:
    """A prompt no other test sends (fail_first counters are keyed by the request body)."""
    return f"{text} ({uuid.uuid4().hex[:8]})"


def raw_post(base_url: str, body: object, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(f"{base_url}/v1/messages", content=content, headers={"x-api-key": "k", **(headers or {})})


def sse_events(base_url: str, body: dict, headers: dict | None = None) -> list[tuple[str, dict]]:
    text = raw_post(base_url, {**body, "stream": True}, headers).text
    events = []
    for frame in text.split("\n\n"):
        if frame:
            name_line, data_line = frame.split("\n")
            assert name_line.startswith("event: ") and data_line.startswith("data: ")
            events.append((name_line[7:], json.loads(data_line[6:])))
    return events


# --------------------------------------------------------------------------- plain and streamed text


def test_plain_message_shape_and_usage(client):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user("What is the capital of France?"))
    assert message.id.startswith("msg_")
    assert message.model == MODEL and message.role == "assistant" and message.type == "message"
    expected = "Simulated reply to: What is the capital of France. This is a deterministic answer."
    assert message.content[0].text == expected
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    usage = message.usage
    assert usage.output_tokens == len(message.content[0].text.split(" "))
    assert usage.input_tokens == -(-len("What is the capital of France?") // 4) + 8
    assert usage.cache_creation_input_tokens == 0 and usage.cache_read_input_tokens == 0
    assert usage.cache_creation.ephemeral_5m_input_tokens == 0
    assert usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert usage.service_tier == "standard"
    assert message._request_id.startswith("req_")


def test_input_tokens_count_system_tools_and_images(client):
    base = client.messages.create(model=MODEL, max_tokens=50, messages=user("x" * 40)).usage.input_tokens
    assert base == 10 + 8
    with_system = client.messages.create(model=MODEL, max_tokens=50, system="y" * 40, messages=user("x" * 40))
    assert with_system.usage.input_tokens == base + 10
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    content = [image, {"type": "text", "text": "x" * 40}]
    with_image = client.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": content}])
    assert with_image.usage.input_tokens == base + 1600
    with_tools = client.messages.create(model=MODEL, max_tokens=50, tools=[WEATHER], messages=user("x" * 40))
    assert with_tools.usage.input_tokens > base


def test_stream_accumulates_to_the_plain_reply(client):
    kwargs = dict(model=MODEL, max_tokens=100, messages=user("Tell me a story"))
    plain = client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3
    assert "".join(pieces) == plain.content[0].text == final.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.stop_reason == "end_turn"


def test_words_option_sets_reply_length(client, base_url):
    message = client.messages.create(model=MODEL, max_tokens=500, messages=user("go [[sim:words=120]]"))
    assert len(message.content[0].text.split(" ")) == 120 == message.usage.output_tokens
    events = sse_events(base_url, {"model": MODEL, "max_tokens": 500, "messages": user("go")}, {"x-sim": "words=40"})
    assert sum(1 for name, _ in events if name == "content_block_delta") == 40
    assert events[-2][1]["usage"] == {"output_tokens": 40}


def test_reply_json_option(client):
    message = client.messages.create(model=MODEL, max_tokens=50, messages=user("[[sim:reply=json]]"))
    assert json.loads(message.content[0].text) == {"answer": 42}


# --------------------------------------------------------------------------- tools


def test_tool_use_plain(client):
    message = client.messages.create(
        model=MODEL, max_tokens=200, tools=[WEATHER, TIME], messages=user("Weather in Paris? [[sim:tool]]")
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Let me check."
    call = message.content[1]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"location": "Paris", "unit": "celsius", "days": 1}
    assert message.stop_reason == "tool_use"


def test_tool_choice_forces_a_tool_without_marker(client):
    message = client.messages.create(
        model=MODEL, max_tokens=200, tools=[WEATHER, TIME], tool_choice={"type": "tool", "name": "get_time"},
        messages=user("What time is it?"),
    )
    assert [(block.type, block.name) for block in message.content] == [("tool_use", "get_time")]
    assert message.content[0].input == {"timezone": "x"}
    any_tool = client.messages.create(
        model=MODEL, max_tokens=200, tools=[WEATHER], tool_choice={"type": "any"}, messages=user("Hi")
    )
    assert [block.type for block in any_tool.content] == ["tool_use"]
    none = client.messages.create(
        model=MODEL, max_tokens=200, tools=[WEATHER], tool_choice={"type": "none"}, messages=user("Hi [[sim:tool]]")
    )
    assert [block.type for block in none.content] == ["text"]


def test_tool_use_streamed(client):
    with client.messages.stream(
        model=MODEL, max_tokens=200, tools=[WEATHER], messages=user("Weather? [[sim:tool]]")
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Let me check."
    assert final.content[1].input == {"location": "Paris", "unit": "celsius", "days": 1}
    assert final.stop_reason == "tool_use"


def test_parallel_tools_streamed(client):
    with client.messages.stream(
        model=MODEL, max_tokens=200, tools=[WEATHER, TIME], messages=user("Both please [[sim:parallel_tools]]")
    ) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert calls[0].input["location"] == "Paris" and calls[1].input == {"timezone": "x"}
    assert len({call.id for call in calls}) == 2
    single = client.messages.create(
        model=MODEL, max_tokens=200, tools=[WEATHER, TIME],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=user("Both please [[sim:parallel_tools]]"),
    )
    assert [block.name for block in single.content if block.type == "tool_use"] == ["get_weather"]


def test_schema_generator():
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "score": {"type": "number"},
            "ok": {"type": "boolean"},
            "maybe": {"type": ["null", "integer"]},
            "item": {"$ref": "#/$defs/Item"},
            "kind": {"const": "fixed"},
        },
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3}}}},
    }
    assert simulator.example_from_schema(schema) == {
        "city": "Paris", "tags": ["x", "x"], "score": 1.5, "ok": True, "maybe": 1, "item": {"n": 3}, "kind": "fixed",
    }


# --------------------------------------------------------------------------- limits and stops


def test_max_tokens_truncates(client):
    message = client.messages.create(model=MODEL, max_tokens=5, messages=user("[[sim:words=50]]"))
    assert message.content[0].text.split(" ") == ["The", "quick", "brown", "fox", "jumps"]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5
    with client.messages.stream(model=MODEL, max_tokens=5, messages=user("[[sim:words=50]]")) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == message.content[0].text and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 5


def test_stop_sequences(client):
    message = client.messages.create(
        model=MODEL, max_tokens=100, stop_sequences=["never", "deterministic"], messages=user("Hello")
    )
    assert message.content[0].text == "Simulated reply to: Hello. This is a "
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "deterministic"


@pytest.mark.parametrize("reason", ["refusal", "pause_turn", "max_tokens"])
def test_forced_stop_reason(client, reason):
    message = client.messages.create(model=MODEL, max_tokens=100, messages=user(f"Hi [[sim:stop={reason}]]"))
    assert message.stop_reason == reason


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (413, anthropic.RequestTooLargeError, "request_too_large"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_marker_maps_to_sdk_exceptions(client, status, exception, error_type):
    with pytest.raises(exception) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=user(f"Hi [[sim:error={status}]]"))
    error = caught.value
    assert error.status_code == status
    assert error.body["type"] == "error" and error.body["error"]["type"] == error_type
    assert error.body["request_id"] == error.response.headers["request-id"]
    assert error.response.headers.get("retry-after") == ("1" if status in (429, 529) else None)
    if status == 404:
        assert error.body["error"]["message"] == f"model: {MODEL}"


def test_error_via_header(client):
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("Hi"), extra_headers={"x-sim": "error=429"})


def test_retired_model(client, monkeypatch):
    monkeypatch.setattr(simulator, "RETIRED_MODELS", {"claude-3-5-sonnet-latest"})
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=10, messages=user("Hi"))
    assert caught.value.body["error"] == {"type": "not_found_error", "message": "model: claude-3-5-sonnet-latest"}


def test_fail_first_then_success(client):
    kwargs = dict(model=MODEL, max_tokens=50, messages=user(unique("Retry me [[sim:fail_first=1,error=529]]")))
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**kwargs)
    assert client.messages.create(**kwargs).stop_reason == "end_turn"
    retrying = client.with_options(max_retries=1)
    retried = retrying.messages.create(
        model=MODEL, max_tokens=50, messages=user(unique("Retry [[sim:fail_first=1,error=500]]"))
    )
    assert retried.content[0].type == "text"


def test_midstream_error_raises_during_iteration(client, base_url):
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught, \
            client.messages.stream(model=MODEL, max_tokens=100, messages=user("Hi [[sim:midstream_error]]")) as stream:
        for text in stream.text_stream:
            received.append(text)
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert received == ["Simulated", " reply"]
    events = sse_events(base_url, {"model": MODEL, "max_tokens": 100, "messages": user("Hi [[sim:midstream_error]]")})
    assert events[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert "message_stop" not in [name for name, _ in events]
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model=MODEL, max_tokens=10, messages=user("Hi [[sim:midstream_error]]"))


def test_fail_first_with_midstream_error(base_url):
    body = {"model": MODEL, "max_tokens": 100, "messages": user(unique("[[sim:fail_first=1,midstream_error]]"))}
    assert sse_events(base_url, body)[-1][0] == "error"
    assert sse_events(base_url, body)[-1][0] == "message_stop"


def test_drop_ends_stream_without_message_stop(base_url):
    events = sse_events(base_url, {"model": MODEL, "max_tokens": 100, "messages": user("Hi")}, {"x-sim": "drop"})
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta"]


# --------------------------------------------------------------------------- usage, timing, structured output


def test_cache_usage_numbers(client):
    plain = client.messages.create(model=MODEL, max_tokens=50, messages=user("Hi"))
    message = client.messages.create(
        model=MODEL, max_tokens=50, messages=user("Hi"),
        extra_headers={"x-sim": "cache_read=1000,cache_write_5m=200,cache_write_1h=30"},
    )
    usage = message.usage
    assert usage.cache_read_input_tokens == 1000
    assert usage.cache_creation_input_tokens == 230
    assert usage.cache_creation.ephemeral_5m_input_tokens == 200
    assert usage.cache_creation.ephemeral_1h_input_tokens == 30
    assert usage.input_tokens == plain.usage.input_tokens


def test_delays(client, base_url):
    started = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=50, messages=user("Hi [[sim:delay_ms=150]]"))
    assert time.monotonic() - started >= 0.15
    arrivals = {}
    body = {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user("Hi [[sim:chunk_delay_ms=40]]")}
    with httpx.stream("POST", f"{base_url}/v1/messages", json=body, headers={"x-api-key": "k"}) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                arrivals.setdefault(line[7:], time.monotonic())
    assert arrivals["message_stop"] - arrivals["content_block_delta"] >= 0.3  # events are not buffered


@pytest.mark.parametrize("location", ["output_config", "output_format"])
def test_structured_output(client, location):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "schema": schema}
    body = {"output_config": {"format": fmt}} if location == "output_config" else {"output_format": fmt}
    message = client.messages.create(model=MODEL, max_tokens=200, messages=user("Extract"), extra_body=body)
    assert json.loads(message.content[0].text) == {"name": "x", "age": 1, "tags": []}


# --------------------------------------------------------------------------- validation and routing


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": user("Hi")}, "model: Field required"),
        ({"model": MODEL, "messages": user("Hi")}, "max_tokens: Field required"),
        (
            {"model": MODEL, "max_tokens": 0, "messages": user("Hi")},
            "max_tokens: Input should be greater than or equal to 1",
        ),
        ({"model": MODEL, "max_tokens": 10}, "messages: Field required"),
        ({"model": MODEL, "max_tokens": 10, "messages": []}, "messages: at least one message is required"),
        (
            {"model": MODEL, "max_tokens": 10, "messages": user("Hi"), "temperature": 1.5},
            "temperature: Input should be less than or equal to 1",
        ),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [
                {"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "messages: text content blocks must be non-empty",
        ),
        (
            {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "Qk0="}}]}]},
            "messages.0.content.0.image.source.base64.media_type: Input should be "
            "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'",
        ),
        (b"{not json", "The request body is not valid JSON."),
        ({"model": MODEL, "max_tokens": 10, "messages": user("Hi [[sim:wrods=3]]")}, "x-sim: unknown option 'wrods'"),
    ],
)
def test_validation_errors(base_url, body, message):
    response = raw_post(base_url, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
        "request_id": response.headers["request-id"],
    }
    assert payload["request_id"].startswith("req_")


def test_missing_api_key_and_unknown_path(base_url):
    response = httpx.post(f"{base_url}/v1/messages", json={"model": MODEL, "max_tokens": 1, "messages": user("Hi")})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    missing = httpx.get(f"{base_url}/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert missing.headers["request-id"].startswith("req_")


# --------------------------------------------------------------------------- recorded shapes


STREAM_REQUESTS = {
    "text_stream.json": {"messages": user("Hello")},
    "tool_use_stream.json": {"tools": [WEATHER], "messages": user("Weather? [[sim:tool]]")},
    "parallel_tool_use_stream.json": {"tools": [WEATHER, TIME], "messages": user("Both [[sim:parallel_tools]]")},
    "overloaded_midstream.json": {"messages": user("Hi [[sim:midstream_error]]")},
}


def _pattern(events) -> list[str]:
    """Event names with runs of deltas collapsed (delta counts differ between answers)."""
    return [name for name, _ in groupby(name for name, _ in events)]


def _by_kind(events) -> dict[tuple, dict]:
    """First event data per (event name, block or delta type)."""
    kinds = {}
    for name, data in events:
        data = json.loads(data) if isinstance(data, str) else data
        subtype = (data.get("content_block") or data.get("delta") or {}).get("type")
        kinds.setdefault((name, subtype), data)
    return kinds


@pytest.mark.parametrize("fixture", sorted(STREAM_REQUESTS))
def test_stream_matches_recorded_shape(base_url, fixture):
    recorded = json.loads((FIXTURES / fixture).read_text())["events"]
    ours = sse_events(base_url, {"model": MODEL, "max_tokens": 300, **STREAM_REQUESTS[fixture]})
    assert _pattern(ours) == _pattern(recorded)
    our_kinds = _by_kind(ours)
    for kind, recorded_data in _by_kind(recorded).items():
        data = our_kinds[kind]
        assert data["type"] == kind[0] and set(recorded_data) <= set(data)
        for key in ("message", "content_block", "delta", "usage", "error"):
            if key in recorded_data:
                assert set(recorded_data[key]) <= set(data[key]), (kind, key)


def test_plain_message_matches_recorded_shape(client):
    recorded = json.loads((FIXTURES / "message_text.json").read_text())["body"]
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=user("Hi"))
    ours = raw.http_response.json()
    assert list(ours) == list(recorded)
    assert set(recorded["usage"]) <= set(ours["usage"])
