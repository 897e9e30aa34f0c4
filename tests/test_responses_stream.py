"""Unit tests of the Responses stream renderer: recorded and synthetic Anthropic streams
replayed through ResponsesStream, checked against OpenAI's event rules and parsed by the
official openai SDK's stream helper (which enforces the order)."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from proxy.errors import GatewayError
from proxy.translation.reasoning import decode_thinking
from proxy.translation.responses_stream import ResponsesStream
from tests.test_responses_translate import APPLY_PATCH, EXEC, HAIKU, NAMESPACE, translate
from tests.test_streaming import block_delta, block_start, block_stop, events, fixture, stop, tool_block

RESPONSE_ID = "resp_aaaaaaaaaaaaaaaaaaaaaaaa"
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def replay(stream, t=None, cost="0.5") -> tuple[bytes, ResponsesStream]:
    t = t or translate(stream=True)
    renderer = ResponsesStream(t, RESPONSE_ID, 1764000000, cost_of=lambda usage: cost)
    return b"".join(renderer.feed(event, data) for event, data in stream), renderer


def parse(raw: bytes) -> list[dict]:
    """Every SSE event: an ``event:`` line naming the type its ``data:`` carries."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][6:])
        assert data["type"] == lines[0][7:]
        out.append(data)
    return out


def check_order(evs: list[dict]) -> None:
    """OpenAI's rules: growing sequence numbers from 0, created then in_progress first, one
    terminal event last, one response id, items added before their deltas and done
    before the terminal event, output indexes 0, 1, 2..."""
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    assert [e["type"] for e in evs[:2]] == ["response.created", "response.in_progress"]
    assert evs[-1]["type"] in TERMINAL and sum(e["type"] in TERMINAL for e in evs) == 1
    assert {e["response"]["id"] for e in evs if "response" in e} == {RESPONSE_ID}
    added, done = {}, set()
    for e in evs:
        if e["type"] == "response.output_item.added":
            assert e["output_index"] == len(added)
            added[e["output_index"]] = e["item"]["id"]
        elif e["type"] == "response.output_item.done":
            assert added[e["output_index"]] == e["item"]["id"]
            done.add(e["output_index"])
        elif "output_index" in e:
            assert e["output_index"] in added and e["output_index"] not in done, e
    if evs[-1]["type"] != "response.failed":
        assert done == set(added)
        assert [item["id"] for item in evs[-1]["response"]["output"]] == [added[i] for i in range(len(added))]


def sdk(raw: bytes) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    return openai.OpenAI(api_key="th-test", base_url="http://gateway.test/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def sdk_final(raw: bytes):
    with sdk(raw).responses.stream(model="claude-sonnet-4-6", input="hi") as stream:
        for _ in stream:
            pass
        return stream.get_final_response()


def thinking_events(index=0, text=("Let me ", "think."), signature="sig-xyz"):
    return [block_start(index, {"type": "thinking", "thinking": "", "signature": ""}),
            *[block_delta(index, {"type": "thinking_delta", "thinking": t}) for t in text],
            block_delta(index, {"type": "signature_delta", "signature": signature}),
            block_stop(index)]


@pytest.mark.parametrize("name", ["text_stream.json", "tool_use_stream.json", "parallel_tool_use_stream.json"])
def test_recorded_streams_follow_openai_order_and_the_sdk_accepts_them(name):
    data = fixture(name)
    t = translate(stream=True, tools=[{"type": "function", "name": n, "parameters": {"type": "object"}}
                                      for n in ("get_weather", "get_time")])
    raw, renderer = replay(data["events"], t)
    evs = parse(raw)
    check_order(evs)
    final = sdk_final(raw)
    assert final.id == RESPONSE_ID and final.status == "completed"
    assert final.output_text == data["expect_text"]
    expected = data.get("expect_tools") or ([data["expect_tool"]] if "expect_tool" in data else [])
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        (e["id"], e["name"], e["input"]) for e in expected]
    assert final.usage.output_tokens == renderer.meter.usage.output_tokens and final.usage.model_extra["cost"] == "0.5"
    assert renderer.finish_reason == ("tool_calls" if expected else "stop")
    assert [item["id"] for item in t.response["output"]] == [item.id for item in final.output]  # what is stored


def test_text_event_sequence_exactly():
    stream = events(block_start(0, {"type": "text", "text": ""}), block_delta(0, {"type": "text_delta", "text": "Hi"}),
                    block_delta(0, {"type": "text_delta", "text": " there"}), block_stop(0)) + stop()
    evs = parse(replay(stream)[0])
    assert [e["type"] for e in evs] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["output"] == []
    assert [e["delta"] for e in evs if e["type"] == "response.output_text.delta"] == ["Hi", " there"]
    assert evs[6]["text"] == "Hi there" and evs[7]["part"]["text"] == "Hi there"
    final = evs[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "Hi there"
    assert final["usage"]["output_tokens"] == 20 and final["usage"]["cost"] == "0.5"


def test_consecutive_text_blocks_share_one_message_item():
    stream = events(block_start(0, {"type": "text", "text": ""}), block_delta(0, {"type": "text_delta", "text": "a"}),
                    block_stop(0), block_start(1, {"type": "text", "text": ""}),
                    block_delta(1, {"type": "text_delta", "text": "b"}), block_stop(1)) + stop()
    evs = parse(replay(stream)[0])
    check_order(evs)
    assert sum(e["type"] == "response.output_item.added" for e in evs) == 1
    assert evs[-1]["response"]["output"][0]["content"][0]["text"] == "ab"


def test_function_call_events_and_namespace_mapping():
    t = translate(stream=True, tools=[EXEC, NAMESPACE])
    stream = events(*tool_block(0, name="multi_agent_v1__close_agent", id_="toolu_1",
                                fragments=('{"target"', ':"nope"}'))) + stop("tool_use")
    raw, renderer = replay(stream, t)
    evs = parse(raw)
    check_order(evs)
    types = [e["type"] for e in evs]
    assert types[2:] == ["response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.delta", "response.function_call_arguments.done",
                         "response.output_item.done", "response.completed"]
    added = evs[2]["item"]
    assert (added["name"], added["namespace"], added["call_id"], added["arguments"]) == (
        "close_agent", "multi_agent_v1", "toolu_1", "")
    assert evs[5]["arguments"] == '{"target":"nope"}'
    assert evs[6]["item"]["status"] == "completed" and evs[6]["item"]["namespace"] == "multi_agent_v1"
    assert renderer.finish_reason == "tool_calls"
    call = sdk_final(raw).output[0]
    assert (call.type, call.name, call.namespace, call.arguments) == (
        "function_call", "close_agent", "multi_agent_v1", '{"target":"nope"}')


def test_a_call_without_arguments_gets_an_empty_object():
    evs = parse(replay(events(*tool_block(0, name="exec_command")) + stop("tool_use"),
                       translate(stream=True, tools=[EXEC]))[0])
    assert [e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta"] == ["{}"]
    assert evs[-1]["response"]["output"][0]["arguments"] == "{}"


def test_custom_tool_call_streams_its_string_at_the_end():
    t = translate(stream=True, tools=[APPLY_PATCH])
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    encoded = json.dumps({"input": patch})
    stream = events(*tool_block(0, name="apply_patch", id_="toolu_p", fragments=(encoded[:10], encoded[10:]))) \
        + stop("tool_use")
    raw, _ = replay(stream, t)
    evs = parse(raw)
    check_order(evs)
    assert [e["type"] for e in evs[2:]] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                                            "response.custom_tool_call_input.done", "response.output_item.done",
                                            "response.completed"]
    assert evs[2]["item"]["type"] == "custom_tool_call" and evs[2]["item"]["input"] == ""
    assert evs[4]["input"] == patch and evs[5]["item"]["input"] == patch and evs[5]["item"]["call_id"] == "toolu_p"
    final = sdk_final(raw)
    assert final.output[0].type == "custom_tool_call" and final.output[0].input == patch


def test_reasoning_summary_events_and_encrypted_content():
    t = translate(stream=True, reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"])
    stream = events(*thinking_events(0), block_start(1, {"type": "text", "text": ""}),
                    block_delta(1, {"type": "text_delta", "text": "Done."}), block_stop(1)) + stop()
    raw, _ = replay(stream, t)
    evs = parse(raw)
    check_order(evs)
    assert [e["type"] for e in evs[2:9]] == [
        "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done"]
    reasoning = evs[8]["item"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert decode_thinking(reasoning["encrypted_content"], "x") == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "sig-xyz"}]
    final = sdk_final(raw)
    assert [item.type for item in final.output] == ["reasoning", "message"] and final.output_text == "Done."


def test_reasoning_without_summary_or_include_shows_neither_but_keeps_them_for_storage():
    t = translate(stream=True, reasoning={"effort": "low"})
    stream = events(*thinking_events(0), block_start(1, {"type": "text", "text": ""}),
                    block_delta(1, {"type": "text_delta", "text": "x"}), block_stop(1)) + stop()
    evs = parse(replay(stream, t)[0])
    assert not any("reasoning_summary" in e["type"] for e in evs)
    done = next(e for e in evs if e["type"] == "response.output_item.done")
    assert done["item"] == {"id": done["item"]["id"], "type": "reasoning", "summary": []}
    assert "encrypted_content" not in evs[-1]["response"]["output"][0]
    assert "encrypted_content" in t.response["output"][0]  # the stored object keeps the signed thinking


def test_max_tokens_ends_in_response_incomplete():
    stream = events(block_start(0, {"type": "text", "text": ""}), block_delta(0, {"type": "text_delta", "text": "cut"}),
                    block_stop(0)) + stop("max_tokens")
    raw, renderer = replay(stream)
    evs = parse(raw)
    check_order(evs)
    assert evs[-1]["type"] == "response.incomplete"
    response = evs[-1]["response"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete" and response["usage"]["output_tokens"] == 20
    assert renderer.finish_reason == "length"


def test_midstream_error_ends_in_response_failed_and_the_meter_knows():
    raw, renderer = replay(fixture("overloaded_midstream.json")["events"])
    evs = parse(raw)
    check_order(evs)
    failed = evs[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "overloaded" and failed["response"]["usage"] is None
    assert "error" not in failed  # a top-level "error" would make the SDK raise a generic APIError
    assert renderer.meter.failed
    with pytest.raises(RuntimeError):  # the SDK's helper: no response.completed
        sdk_final(raw)


def test_a_stream_the_gateway_cuts_ends_in_response_failed_too():
    partial = events(block_start(0, {"type": "text", "text": ""}), block_delta(0, {"type": "text_delta", "text": "a"}))
    raw, renderer = replay(partial)
    raw += renderer.fail(GatewayError(502, "The upstream stream ended early.", type="server_error",
                                      code="upstream_stream_truncated"))
    evs = parse(raw)
    check_order(evs)
    assert evs[-1]["response"]["error"] == {"code": "upstream_stream_truncated",
                                            "message": "The upstream stream ended early."}
    _, fresh = replay([])
    assert [e["type"] for e in parse(fresh.fail(GatewayError(502, "x", code="c")))] == [
        "response.created", "response.in_progress", "response.failed"]


def test_delivered_text_is_metered_for_cancel_billing():
    t = translate(stream=True, tools=[EXEC], reasoning={"effort": "low", "summary": "auto"})
    stream = events(*thinking_events(0, text=("abcd",)), block_start(1, {"type": "text", "text": ""}),
                    block_delta(1, {"type": "text_delta", "text": "12345678"}), block_stop(1),
                    *tool_block(2, name="exec_command", fragments=('{"cmd":"ls"}',)))
    _, renderer = replay(stream, t)
    assert renderer.meter.delivered_chars == 4 + 8 + len('{"cmd":"ls"}')


def test_json_mode_streams_the_forced_tool_as_text():
    t = translate(HAIKU, stream=True, text={"format": {"type": "json_object"}})
    stream = events(*tool_block(0, name="json_response", fragments=('{"answer"', ": 42}"))) + stop("tool_use")
    raw, renderer = replay(stream, t)
    evs = parse(raw)
    check_order(evs)
    assert json.loads(sdk_final(raw).output_text) == {"answer": 42}
    assert renderer.finish_reason == "stop"
