"""Unit tests of proxy.streaming: recorded Anthropic streams replayed through StreamTranslator,
the output parsed the way the openai SDK parses it (no Django).

Run alone with: .venv/bin/pytest -p no:django --noconftest tests/test_streaming.py
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson
import pytest

from proxy.errors import GatewayError
from proxy.modelspec import ModelSpec
from proxy.translation import DONE, JSON_TOOL_NAME, StreamTranslator, Translated, Usage, sse_error, translate_request

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "anthropic"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "anthropic"
STREAMS = ["text_stream.json", "tool_use_stream.json", "parallel_tool_use_stream.json"]
SPEC = ModelSpec(public_id="claude-sonnet-4-6", upstream_id="claude-sonnet-4-6")
REQUESTED = "anthropic/claude-sonnet-4-6"
COMPLETION_ID = "chatcmpl-test0001"
CREATED = 1764000000


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def translated(include_usage: bool = True, **body) -> Translated:
    body = {"model": REQUESTED, "messages": [{"role": "user", "content": "hi"}], "stream": True, **body}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return translate_request(body, SPEC, requested_model=REQUESTED)


def replay(events, t: Translated | None = None) -> tuple[bytes, StreamTranslator]:
    translator = StreamTranslator(t or translated(), COMPLETION_ID, CREATED)
    return b"".join(translator.feed(event, data) for event, data in events), translator


def parse_sse(raw: bytes) -> tuple[list[dict], bool]:
    """Parse like openai's SSEDecoder + Stream: only ``data:`` fields, one JSON object per
    event, stop at ``[DONE]``. Fails on any other field (``event:``/``id:``/``retry:``)."""
    chunks, done = [], False
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        assert not done, "bytes after [DONE]"
        data = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            assert field == "data", f"non-data SSE line: {line!r}"
            data.append(value[1:] if value.startswith(" ") else value)
        payload = "\n".join(data)
        if payload.startswith("[DONE]"):
            done = True
            continue
        chunks.append(json.loads(payload))
    return chunks, done


def content_chunks(chunks):
    return [c for c in chunks if c.get("choices")]


def text_of(chunks) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in content_chunks(chunks))


def tool_calls_of(chunks) -> dict[int, dict]:
    """Reassemble tool calls per OpenAI index, concatenating strings like the SDK does
    (so a repeated id or name would show up doubled)."""
    calls: dict[int, dict] = {}
    for chunk in content_chunks(chunks):
        for fragment in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(fragment["index"], {"id": "", "type": None, "name": "", "arguments": ""})
            call["id"] += fragment.get("id") or ""
            call["type"] = fragment.get("type", call["type"])
            call["name"] += fragment["function"].get("name") or ""
            call["arguments"] += fragment["function"].get("arguments") or ""
    return calls


def expected_tools(name: str) -> list[dict]:
    data = fixture(name)
    return data.get("expect_tools") or ([data["expect_tool"]] if "expect_tool" in data else [])


def events(*pairs):
    """A synthetic stream: message_start, the given events, message_delta, message_stop."""
    start = ("message_start", {"type": "message_start", "message": {
        "id": "msg_x", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-6",
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 1}}})
    return [start, *pairs]


def stop(reason="end_turn", usage=None):
    return [("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                               "usage": usage or {"output_tokens": 20}}),
            ("message_stop", {"type": "message_stop"})]


def block_start(index, block):
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def block_delta(index, delta):
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index):
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def tool_block(index, name="get_time", id_="toolu_9", fragments=("",)):
    return [block_start(index, {"type": "tool_use", "id": id_, "name": name, "input": {}}),
            *[block_delta(index, {"type": "input_json_delta", "partial_json": f}) for f in fragments],
            block_stop(index)]


# --- recorded streams --------------------------------------------------------------------

@pytest.mark.parametrize("name", STREAMS + ["overloaded_midstream.json"])
def test_fixture_copies_match_the_shared_recordings(name):
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("shared/ is not beside the repository")
    assert (FIXTURES / name).read_bytes() == (SHARED_FIXTURES / name).read_bytes()


@pytest.mark.parametrize("include_usage", [True, False])
@pytest.mark.parametrize("name", STREAMS + ["overloaded_midstream.json"])
def test_only_bare_data_lines(name, include_usage):
    raw, _ = replay(fixture(name)["events"], translated(include_usage))
    for line in raw.decode().split("\n"):
        assert line == "" or line.startswith("data: "), line
    parse_sse(raw)


@pytest.mark.parametrize("name", STREAMS)
def test_role_sent_once_in_the_first_chunk(name):
    chunks, _ = parse_sse(replay(fixture(name)["events"])[0])
    roles = [c["choices"][0]["delta"].get("role") for c in content_chunks(chunks)]
    assert roles[0] == "assistant" and roles.count("assistant") == 1 and set(roles[1:]) == {None}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize("name", STREAMS)
def test_text_concatenation(name):
    chunks, _ = parse_sse(replay(fixture(name)["events"])[0])
    assert text_of(chunks) == fixture(name)["expect_text"]


@pytest.mark.parametrize("name", STREAMS)
def test_tool_calls_reassembled_per_openai_index(name):
    chunks, _ = parse_sse(replay(fixture(name)["events"])[0])
    calls = tool_calls_of(chunks)
    expected = expected_tools(name)
    assert sorted(calls) == list(range(len(expected)))
    for index, tool in enumerate(expected):
        call = calls[index]
        assert (call["id"], call["type"], call["name"]) == (tool["id"], "function", tool["name"])
        assert json.loads(call["arguments"]) == tool["input"]


def test_parallel_calls_get_indexes_0_and_1_not_block_indexes():
    chunks, _ = parse_sse(replay(fixture("parallel_tool_use_stream.json")["events"])[0])
    indexes = [f["index"] for c in content_chunks(chunks) for f in c["choices"][0]["delta"].get("tool_calls") or []]
    assert set(indexes) == {0, 1}
    assert indexes == sorted(indexes)


def test_tool_call_fragment_shapes():
    chunks, _ = parse_sse(replay(fixture("tool_use_stream.json")["events"])[0])
    fragments = [f for c in content_chunks(chunks) for f in c["choices"][0]["delta"].get("tool_calls") or []]
    assert fragments[0] == {"index": 0, "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "type": "function",
                            "function": {"name": "get_weather", "arguments": ""}}
    assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} and f["function"]["arguments"]
               for f in fragments[1:])
    assert len(fragments) == 5  # the empty first input_json_delta is skipped


@pytest.mark.parametrize("name,finish_reason", [("text_stream.json", "stop"), ("tool_use_stream.json", "tool_calls"),
                                                ("parallel_tool_use_stream.json", "tool_calls")])
def test_final_chunk_carries_the_finish_reason(name, finish_reason):
    raw, translator = replay(fixture(name)["events"])
    chunks, _ = parse_sse(raw)
    final = content_chunks(chunks)[-1]["choices"][0]
    assert final["delta"] == {} and final["finish_reason"] == finish_reason
    assert all(c["choices"][0]["finish_reason"] is None for c in content_chunks(chunks)[:-1])
    assert translator.finish_reason == finish_reason


@pytest.mark.parametrize("name,prompt,completion", [("text_stream.json", 11, 6), ("tool_use_stream.json", 377, 65),
                                                    ("parallel_tool_use_stream.json", 420, 112)])
def test_usage_chunk_is_last_before_done(name, prompt, completion):
    raw, _ = replay(fixture(name)["events"])
    chunks, done = parse_sse(raw)
    assert done and raw.endswith(DONE)
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion,
                             "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0,
                                                       "audio_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])


@pytest.mark.parametrize("name", STREAMS)
def test_no_usage_without_include_usage(name):
    chunks, done = parse_sse(replay(fixture(name)["events"], translated(include_usage=False))[0])
    assert done and all("usage" not in c and c["choices"] for c in chunks)


@pytest.mark.parametrize("name", STREAMS)
def test_every_chunk_shares_id_created_model_object(name):
    chunks, _ = parse_sse(replay(fixture(name)["events"])[0])
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        (COMPLETION_ID, "chat.completion.chunk", CREATED, REQUESTED)}


def test_midstream_error_becomes_an_openai_error_event():
    data = fixture("overloaded_midstream.json")
    raw, translator = replay(data["events"])
    chunks, done = parse_sse(raw)
    assert not done
    assert text_of(chunks[:-1]) == data["expect_partial_text"]
    assert chunks[-1] == {"error": {"message": "Anthropic's API is temporarily overloaded; please retry shortly.",
                                    "type": "server_error", "param": None, "code": "overloaded"}}
    assert translator.failed and not translator.done and translator.error_type == "overloaded_error"
    assert translator.feed("message_stop", {"type": "message_stop"}) == b""


def test_state_for_metering():
    raw, translator = replay(fixture("tool_use_stream.json")["events"])
    assert translator.done and not translator.failed and translator.error_type is None
    assert translator.upstream_message_id == "msg_019Q1hrJbZG26Fb9BQhrkHEr"
    assert translator.upstream_model == "claude-sonnet-4-6"
    assert translator.usage == Usage(input_tokens=377, output_tokens=65)
    assert translator.usage_final and translator.estimated_output_tokens() == 65


# --- synthetic streams -----------------------------------------------------------------------

def test_tool_with_empty_arguments_gets_an_empty_object():
    raw, _ = replay(events(*tool_block(0, fragments=("", ""))) + stop("tool_use"))
    assert tool_calls_of(parse_sse(raw)[0])[0]["arguments"] == "{}"


def test_excluded_thinking_and_signature_deltas_are_not_forwarded():
    stream = events(block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
                    block_delta(0, {"type": "thinking_delta", "thinking": "secret"}),
                    block_delta(0, {"type": "signature_delta", "signature": "sig"}), block_stop(0),
                    block_start(1, {"type": "text", "text": ""}),
                    block_delta(1, {"type": "text_delta", "text": "The GCD is 21."}), block_stop(1)) + stop()
    t = translate_request({"model": REQUESTED, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                           "reasoning": {"effort": "low", "exclude": True}},
                          ModelSpec(public_id="t", upstream_id="t", thinking_mode="enabled"), requested_model=REQUESTED)
    raw, translator = replay(stream, t)
    assert b"secret" not in raw and b"sig" not in raw and b"reasoning" not in raw
    assert text_of(parse_sse(raw)[0]) == "The GCD is 21."
    assert translator.meter.delivered_chars == len("The GCD is 21.")


def test_tool_index_counts_tools_after_a_thinking_block():
    stream = events(block_start(0, {"type": "thinking", "thinking": "", "signature": ""}), block_stop(0),
                    *tool_block(1, fragments=('{"a": 1}',))) + stop("tool_use")
    calls = tool_calls_of(parse_sse(replay(stream)[0])[0])
    assert list(calls) == [0] and json.loads(calls[0]["arguments"]) == {"a": 1}


def _json_mode() -> Translated:
    return translated(response_format={"type": "json_object"})


def test_json_mode_forced_tool_streams_as_content():
    stream = events(*tool_block(0, name=JSON_TOOL_NAME, fragments=("", '{"answer"', ': 42}'))) + stop("tool_use")
    raw, translator = replay(stream, _json_mode())
    chunks, _ = parse_sse(raw)
    assert text_of(chunks) == '{"answer": 42}'
    assert not tool_calls_of(chunks)
    assert content_chunks(chunks)[-1]["choices"][0]["finish_reason"] == "stop" == translator.finish_reason


def test_json_mode_stray_text_is_not_forwarded():
    stream = events(block_start(0, {"type": "text", "text": "Sure:"}),
                    block_delta(0, {"type": "text_delta", "text": " here"}), block_stop(0),
                    *tool_block(1, name=JSON_TOOL_NAME, fragments=('{"a": 1}',))) + stop("tool_use")
    raw, _ = replay(stream, _json_mode())
    assert text_of(parse_sse(raw)[0]) == '{"a": 1}'


def test_json_mode_empty_input_is_an_empty_object():
    raw, _ = replay(events(*tool_block(0, name=JSON_TOOL_NAME)) + stop("tool_use"), _json_mode())
    assert text_of(parse_sse(raw)[0]) == "{}"


def test_json_mode_cut_short_is_length():
    stream = events(*tool_block(0, name=JSON_TOOL_NAME, fragments=('{"a": ',))) + stop("max_tokens")
    raw, _ = replay(stream, _json_mode())
    assert content_chunks(parse_sse(raw)[0])[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stop_reason,finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length")])
def test_stream_finish_reasons(stop_reason, finish_reason):
    raw, _ = replay(events() + stop(stop_reason))
    assert content_chunks(parse_sse(raw)[0])[-1]["choices"][0]["finish_reason"] == finish_reason


def test_missing_message_delta_finishes_with_stop():
    raw, translator = replay(events(("message_stop", {"type": "message_stop"})))
    assert content_chunks(parse_sse(raw)[0])[-1]["choices"][0]["finish_reason"] == "stop"
    assert translator.done and not translator.usage_final


def test_message_delta_usage_supersedes_message_start():
    later = {"output_tokens": 30, "input_tokens": 12, "cache_read_input_tokens": 100,
             "cache_creation_input_tokens": 50,
             "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30}}
    raw, translator = replay(events() + stop(usage=later))
    assert translator.usage == Usage(input_tokens=12, cache_write_5m=20, cache_write_1h=30, cache_read=100,
                                     output_tokens=30)
    usage = parse_sse(raw)[0][-1]["usage"]
    assert (usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"], usage["total_tokens"]) == (
        162, 100, 192)


def test_ping_and_unknown_events_produce_nothing():
    translator = StreamTranslator(translated(), COMPLETION_ID, CREATED)
    assert translator.feed("ping", '{"type": "ping"}') == b""
    assert translator.feed("brand_new_event", {"type": "brand_new_event"}) == b""
    assert translator.feed("content_block_stop", {"type": "content_block_stop", "index": 0}) == b""
    assert translator.feed("content_block_delta", {"index": 0, "delta": {"type": "citations_delta"}}) == b""


def test_estimated_output_tokens_before_message_delta():
    translator = StreamTranslator(translated(), COMPLETION_ID, CREATED)
    for event, data in events(block_start(0, {"type": "text", "text": ""}),
                              block_delta(0, {"type": "text_delta", "text": "x" * 40}),
                              block_delta(0, {"type": "text_delta", "text": "y"})):
        translator.feed(event, data)
    assert translator.delivered_output_chars == 41
    assert translator.estimated_output_tokens() == 11  # ceil(41 / 4) beats 2 deltas
    for _ in range(20):
        translator.feed(*block_delta(0, {"type": "text_delta", "text": "z"}))
    assert translator.estimated_output_tokens() == 22  # 22 deltas beat ceil(61 / 4)
    assert not translator.usage_final


def test_sse_error_helper():
    err = GatewayError(429, "slow down", type="requests", code="rate_limit_exceeded")
    assert sse_error(err) == b'data: ' + orjson.dumps(err.body()) + b"\n\n"


# --- the official openai SDK as the client ------------------------------------------------------

def sdk_client(raw: bytes):
    openai = pytest.importorskip("openai")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return openai.OpenAI(api_key="th-test", base_url="http://gateway.test/api/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def sdk_final_completion(raw: bytes):
    client = sdk_client(raw)
    with client.chat.completions.stream(model=REQUESTED, messages=[{"role": "user", "content": "hi"}],
                                        stream_options={"include_usage": True}) as stream:
        return stream.get_final_completion()


@pytest.mark.parametrize("name", STREAMS)
def test_openai_sdk_accumulates_the_stream(name):
    data = fixture(name)
    completion = sdk_final_completion(replay(data["events"])[0])
    message = completion.choices[0].message
    assert completion.id == COMPLETION_ID and completion.model == REQUESTED
    assert message.role == "assistant" and message.content == data["expect_text"]
    tools = expected_tools(name)
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []] == [
        (t["id"], t["name"], t["input"]) for t in tools]
    assert completion.choices[0].finish_reason == ("tool_calls" if tools else "stop")
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_openai_sdk_stream_state_accumulates_parallel_calls():
    openai = pytest.importorskip("openai")
    from openai.lib.streaming.chat import ChatCompletionStreamState

    client = sdk_client(replay(fixture("parallel_tool_use_stream.json")["events"])[0])
    state = ChatCompletionStreamState()
    for chunk in client.chat.completions.create(model=REQUESTED, messages=[{"role": "user", "content": "hi"}],
                                                stream=True, stream_options={"include_usage": True}):
        assert isinstance(chunk, openai.types.chat.ChatCompletionChunk)
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[1].function.arguments) == {"timezone": "Europe/Paris"}
    assert final.usage.prompt_tokens == 420


def test_openai_sdk_json_mode_content_parses():
    stream = events(*tool_block(0, name=JSON_TOOL_NAME, fragments=('{"answer"', ': 42}'))) + stop("tool_use")
    completion = sdk_final_completion(replay(stream, _json_mode())[0])
    assert json.loads(completion.choices[0].message.content) == {"answer": 42}
    assert not completion.choices[0].message.tool_calls


def test_openai_sdk_raises_on_the_midstream_error():
    openai = pytest.importorskip("openai")
    client = sdk_client(replay(fixture("overloaded_midstream.json")["events"])[0])
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=REQUESTED, messages=[{"role": "user", "content": "hi"}],
                                                    stream=True):
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "Partial answer"
    assert caught.value.code == "overloaded" and caught.value.type == "server_error"
