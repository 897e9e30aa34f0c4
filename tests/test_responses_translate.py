"""Unit tests of the Responses API translation (request, items, tools, output): pure
functions, no Django database. The wire shapes are the ones Codex CLI 0.171, the openai
SDK and the Agents SDK send (captured, see docs/wire-format notes in the modules)."""
from __future__ import annotations

import json

import pytest

from proxy.errors import GatewayError
from proxy.modelspec import ModelSpec
from proxy.translation import JSON_TOOL_NAME, Usage
from proxy.translation.reasoning import decode_thinking, encode_thinking
from proxy.translation.responses_output import client_view, translate_message
from proxy.translation.responses_request import DEFAULT_MAX_OUTPUT_TOKENS, translate_responses_request

SONNET = ModelSpec(public_id="claude-sonnet-4-6", upstream_id="claude-sonnet-4-6-up", max_output_tokens=128_000,
                   structured_output=True, prefill=False, thinking_mode="enabled")
HAIKU = ModelSpec(public_id="claude-haiku-4-5", upstream_id="claude-haiku-4-5", max_output_tokens=64_000)
RESPONSE_ID = "resp_0123456789abcdef01234567"

EXEC = {"type": "function", "name": "exec_command", "description": "Runs a command.", "strict": False,
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                       "additionalProperties": False}}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
    {"type": "function", "name": "close_agent", "description": "Close one.", "strict": False,
     "parameters": {"type": "object", "properties": {"target": {"type": "string"}}}},
    {"type": "function", "name": "spawn_agent", "description": "Spawn one.", "strict": False,
     "parameters": {"type": "object", "properties": {}}}]}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. This is a FREEFORM tool.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
WEB_SEARCH = {"type": "web_search", "external_web_access": False, "search_content_types": ["text", "image"]}


def translate(spec=SONNET, history=None, store_enabled=True, **body):
    body = {"model": "claude-sonnet-4-6", "input": "hi", **body}
    return translate_responses_request(body, spec, requested_model=body["model"], store_enabled=store_enabled,
                                       history=history)


def rejected(param, spec=SONNET, **body) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        translate(spec, **body)
    err = caught.value
    assert err.status == 400 and err.param == param, (err.param, err.message)
    assert err.body()["error"]["type"] == "invalid_request_error"
    return err


def user(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def thinking_block(text="Let me think.", signature="sig-abc"):
    return {"type": "thinking", "thinking": text, "signature": signature}


def reasoning_item(blocks=None, **extra):
    return {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking."}],
            "content": None, "encrypted_content": encode_thinking(blocks or [thinking_block()]), **extra}


# --- input and instructions --------------------------------------------------------------

def test_string_input_is_one_user_message_and_instructions_lead_the_system():
    t = translate(instructions="Be brief.", input="Hello")
    assert t.payload["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}]
    assert t.payload["system"] == [{"type": "text", "text": "Be brief."}]
    assert t.payload["model"] == "claude-sonnet-4-6-up" and t.payload["stream"] is False
    assert t.input_items[0]["type"] == "message" and t.input_items[0]["id"].startswith("msg_")


def test_codex_input_developer_messages_become_system_and_ids_are_not_looked_up():
    items = [
        {"type": "message", "id": "msg_294b5e17", "role": "developer",
         "content": [{"type": "input_text", "text": "You are a coding agent."}]},
        {"type": "message", "id": "msg_01a2", "role": "developer", "content": [
            {"type": "input_text", "text": "<skills_instructions>"}, {"type": "input_text", "text": "<perms>"}]},
        {"type": "message", "id": "msg_01a3", "role": "user",
         "content": [{"type": "input_text", "text": "<environment_context>"}]},
        {"type": "message", "id": "msg_01a4", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]},
    ]
    t = translate(input=items, store=False, prompt_cache_key="thread-uuid", client_metadata={"thread_id": "x"},
                  include=["reasoning.encrypted_content"], parallel_tool_calls=True, tool_choice="auto",
                  tools=[EXEC, NAMESPACE, WEB_SEARCH])
    assert [b["text"] for b in t.payload["system"]] == ["You are a coding agent.", "<skills_instructions>", "<perms>"]
    assert t.payload["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "<environment_context>"}, {"type": "text", "text": "say hi"}]}]
    assert [i["id"] for i in t.input_items] == ["msg_294b5e17", "msg_01a2", "msg_01a3", "msg_01a4"]
    assert t.store is False and t.include_encrypted and t.ignored_tools == ["web_search"]


def test_agents_sdk_messages_without_type_and_replayed_calls():
    items = [{"content": "weather in Paris?", "role": "user"},
             {"arguments": '{"city":"Paris"}', "call_id": "call_w1", "name": "get_weather", "type": "function_call",
              "id": "fc_1", "status": "completed"},
             {"call_id": "call_w1", "output": "sunny in Paris", "type": "function_call_output"}]
    weather = {"type": "function", "name": "get_weather", "description": "Weather", "strict": True,
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                              "additionalProperties": False}}
    t = translate(input=items, instructions="You are helpful.", tools=[weather], include=[])
    assert t.payload["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_w1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1", "content": "sunny in Paris"}]},
    ]
    assert t.payload["tools"] == [{"name": "get_weather", "description": "Weather",
                                   "input_schema": weather["parameters"]}]
    assert [i["type"] for i in t.input_items] == ["message", "function_call", "function_call_output"]


def test_assistant_output_text_and_images_and_tool_output_parts():
    png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    items = [
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is this?"}, {"type": "input_image", "image_url": png, "detail": "auto"},
            {"type": "input_image", "image_url": "https://example.com/cat.jpg"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A pixel.",
                                                              "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "look", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": "seen"},
                                                                      {"type": "input_image", "image_url": png}]},
        user("and now?"),
    ]
    messages = translate(input=items).payload["messages"]
    assert messages[0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": png.split(",", 1)[1]}}
    assert messages[0]["content"][2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert messages[1]["content"] == [{"type": "text", "text": "A pixel."},
                                      {"type": "tool_use", "id": "c1", "name": "look", "input": {}}]
    result = messages[2]["content"][0]
    assert result["tool_use_id"] == "c1" and [b["type"] for b in result["content"]] == ["text", "image"]
    assert messages[2]["content"][1] == {"type": "text", "text": "and now?"}  # results first, then the text


def test_history_without_tools_gets_stub_tools_and_tool_choice_none():
    items = [user("go"), {"type": "function_call", "call_id": "c1", "name": "old_tool", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "done"}]
    t = translate(input=items)
    assert [tool["name"] for tool in t.payload["tools"]] == ["old_tool"]
    assert t.payload["tool_choice"] == {"type": "none"}


def test_hosted_call_items_are_skipped_and_item_references_rejected():
    items = [user("search"), {"type": "web_search_call", "id": "ws_1", "status": "completed",
                              "action": {"type": "search", "query": "x"}}, user("thanks")]
    assert translate(input=items).payload["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "search"}, {"type": "text", "text": "thanks"}]}]
    rejected("input[1].type", input=[user("x"), {"type": "item_reference", "id": "msg_1"}])


# --- tools -----------------------------------------------------------------------------

def test_namespace_tools_are_flattened_and_history_calls_use_the_flat_name():
    items = [user("close it"),
             {"type": "function_call", "status": "completed", "id": "fc_1", "name": "close_agent",
              "namespace": "multi_agent_v1", "arguments": '{"target":"nope"}', "call_id": "call_ns1"},
             {"type": "function_call_output", "id": "fco_x", "call_id": "call_ns1", "output": "invalid agent id"}]
    t = translate(input=items, tools=[EXEC, NAMESPACE])
    names = [tool["name"] for tool in t.payload["tools"]]
    assert names == ["exec_command", "multi_agent_v1__close_agent", "multi_agent_v1__spawn_agent"]
    assert t.payload["messages"][1]["content"][0]["name"] == "multi_agent_v1__close_agent"
    back = t.names.client("multi_agent_v1__close_agent")
    assert (back.name, back.namespace, back.kind) == ("close_agent", "multi_agent_v1", "function")


def test_namespace_names_that_do_not_fit_are_hashed_and_still_map_back():
    long_ns = {"type": "namespace", "name": "mcp__" + "a" * 40, "description": "MCP",
               "tools": [{"type": "function", "name": "b" * 30, "parameters": {"type": "object"}}]}
    t = translate(tools=[long_ns])
    flat = t.payload["tools"][0]["name"]
    assert len(flat) <= 64 and all(c.isalnum() or c in "_-" for c in flat)
    assert t.names.client(flat).namespace == "mcp__" + "a" * 40


def test_custom_tool_is_a_one_string_tool_with_its_grammar_described():
    t = translate(tools=[APPLY_PATCH])
    (tool,) = t.payload["tools"]
    assert tool["name"] == "apply_patch"
    assert tool["input_schema"]["properties"] == {"input": {
        "type": "string", "description": "The tool's whole input, as raw text (not JSON-encoded)."}}
    assert tool["input_schema"]["required"] == ["input"]
    assert "lark grammar" in tool["description"] and "start: begin_patch" in tool["description"]


def test_custom_tool_call_items_round_trip_as_tool_use_with_one_string():
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"
    items = [user("write"), {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_patch1",
                             "name": "apply_patch", "input": patch},
             {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "call_patch1", "output": "Exit code: 0"}]
    messages = translate(input=items, tools=[APPLY_PATCH]).payload["messages"]
    assert messages[1]["content"] == [{"type": "tool_use", "id": "call_patch1", "name": "apply_patch",
                                       "input": {"input": patch}}]
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "call_patch1", "content": "Exit code: 0"}]


def test_hosted_tools_merely_offered_are_left_out():
    t = translate(tools=[WEB_SEARCH, {"type": "file_search", "vector_store_ids": ["vs_1"]}, EXEC,
                         {"type": "web_search"}])
    assert [tool["name"] for tool in t.payload["tools"]] == ["exec_command"]
    assert t.ignored_tools == ["web_search", "file_search"]
    only_hosted = translate(tools=[WEB_SEARCH], tool_choice="auto")
    assert "tools" not in only_hosted.payload and "tool_choice" not in only_hosted.payload


@pytest.mark.parametrize("choice", [{"type": "web_search"}, {"type": "file_search"}, {"type": "mcp", "server_label": "x"},
                                    {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}])
def test_a_tool_choice_forcing_a_hosted_tool_is_a_400_naming_it(choice):
    err = rejected("tool_choice" if choice["type"] != "allowed_tools" else "tool_choice.tools[0]",
                   tools=[WEB_SEARCH, EXEC], tool_choice=choice)
    assert "web_search" in err.message or choice["type"] in err.message


def test_tool_choice_forms():
    tools = [EXEC, NAMESPACE, APPLY_PATCH]
    assert translate(tools=tools, tool_choice="required").payload["tool_choice"] == {"type": "any"}
    assert translate(tools=tools, tool_choice="none").payload["tool_choice"] == {"type": "none"}
    assert translate(tools=tools, tool_choice={"type": "function", "name": "exec_command"}).payload["tool_choice"] \
        == {"type": "tool", "name": "exec_command"}
    named = translate(tools=tools, tool_choice={"type": "function", "name": "close_agent", "namespace": "multi_agent_v1"})
    assert named.payload["tool_choice"] == {"type": "tool", "name": "multi_agent_v1__close_agent"}
    assert translate(tools=tools, tool_choice={"type": "custom", "name": "apply_patch"}).payload["tool_choice"] \
        == {"type": "tool", "name": "apply_patch"}
    allowed = translate(tools=tools, tool_choice={"type": "allowed_tools", "mode": "required",
                                                  "tools": [{"type": "function", "name": "exec_command"}]})
    assert [tool["name"] for tool in allowed.payload["tools"]] == ["exec_command"]
    assert allowed.payload["tool_choice"] == {"type": "any"}
    rejected("tool_choice", tools=tools, tool_choice={"type": "function", "name": "nope"})


def test_parallel_tool_calls_false_disables_parallel_use():
    t = translate(tools=[EXEC], parallel_tool_calls=False)
    assert t.payload["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert t.settings["parallel_tool_calls"] is False


# --- sampling, limits, reasoning, formats, fields ------------------------------------------

def test_max_output_tokens_default_and_cap():
    assert translate().payload["max_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    assert translate(HAIKU, max_output_tokens=100).payload["max_tokens"] == 100
    assert translate(HAIKU, max_output_tokens=1_000_000).payload["max_tokens"] == 64_000
    rejected("max_output_tokens", max_output_tokens=0)


def test_sampling_follows_the_chat_rules():
    assert translate(HAIKU, temperature=0.2).payload["temperature"] == 0.2
    rejected("temperature", temperature=1.5)
    rejected("top_p", temperature=0.5, top_p=0.5)  # the model rejects both together
    assert "top_p" not in translate(temperature=0.5, top_p=1).payload


def test_reasoning_effort_turns_thinking_on_and_summary_is_remembered():
    t = translate(reasoning={"effort": "medium", "summary": "auto"})
    assert t.payload["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert t.summary and t.settings["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert "thinking" not in translate(reasoning={"effort": "none"}).payload
    rejected("reasoning.effort", HAIKU, reasoning={"effort": "high"})
    rejected("reasoning.effort", reasoning={"effort": "extreme"})
    rejected("reasoning.summary", reasoning={"effort": "low", "summary": "verbose"})
    rejected("temperature", reasoning={"effort": "low"}, temperature=0.3)


def test_tool_loop_keeps_thinking_only_when_the_signed_thinking_comes_back():
    call = {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd":"ls"}'}
    result = {"type": "function_call_output", "call_id": "c1", "output": "a.txt"}
    with_reasoning = translate(input=[user("ls"), reasoning_item(), call, result], tools=[EXEC],
                               reasoning={"effort": "medium"})
    assert with_reasoning.payload["thinking"]["type"] == "enabled"
    assert with_reasoning.payload["messages"][1]["content"][0] == thinking_block()
    without = translate(input=[user("ls"), call, result], tools=[EXEC], reasoning={"effort": "medium"})
    assert "thinking" not in without.payload


def test_thinking_blocks_are_not_sent_when_thinking_is_off():
    items = [user("a"), reasoning_item(), {"type": "message", "role": "assistant",
                                           "content": [{"type": "output_text", "text": "b"}]}, user("c")]
    messages = translate(input=items).payload["messages"]
    assert messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "b"}]}
    only_reasoning = translate(input=[user("a"), reasoning_item(), user("c")]).payload["messages"]
    assert only_reasoning == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "c"}]}]


def test_reasoning_items_as_codex_sends_them_back():
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"}
    item = reasoning_item([thinking_block(), redacted])
    assert item["content"] is None
    items = [user("x"), item, {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"}]
    t = translate(input=items, tools=[EXEC], reasoning={"effort": "low"})
    assert t.payload["messages"][1]["content"][:2] == [thinking_block(), redacted]
    # without encrypted_content a reasoning item is only a summary: nothing to restore
    summary_only = {"type": "reasoning", "id": "rs_2", "summary": [], "content": None}
    assert translate(input=[user("x"), summary_only, user("y")]).payload["messages"][0]["content"][1]["text"] == "y"
    rejected("input[1].encrypted_content", input=[user("x"), {"type": "reasoning", "id": "rs_1", "summary": [],
                                                             "encrypted_content": "ENCRYPTED_SIG_abc123"}])


def test_thinking_round_trips_through_encrypted_content():
    blocks = [thinking_block("a" * 1000, "sig=="), {"type": "redacted_thinking", "data": "xyz"}]
    assert decode_thinking(encode_thinking(blocks), "x") == blocks


def test_text_format_json_modes():
    native = translate(text={"format": {"type": "json_schema", "name": "answer", "strict": True,
                                        "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}})
    assert native.payload["output_config"] == {"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"a": {"type": "integer"}}}}}
    emulated = translate(HAIKU, text={"format": {"type": "json_object"}})
    assert emulated.payload["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}
    assert emulated.json_tool == JSON_TOOL_NAME
    assert "output_config" not in translate(text={"format": {"type": "text"}, "verbosity": "low"}).payload
    rejected("text.format.type", text={"format": {"type": "xml"}})
    rejected("text.format.schema", text={"format": {"type": "json_schema", "name": "x"}})
    rejected("text.format", HAIKU, text={"format": {"type": "json_object"}}, tools=[EXEC])


def test_prompt_caching_as_on_chat_completions():
    cc = {"type": "ephemeral"}
    t = translate(tools=[{**EXEC, "cache_control": {"type": "ephemeral", "ttl": "1h"}}], cache_control=cc,
                  input=[{"role": "developer", "content": [{"type": "input_text", "text": "Rules.", "cache_control": cc}]},
                         user("hi")])
    assert t.payload["tools"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert t.payload["system"][0]["cache_control"] == cc
    assert t.payload["messages"][-1]["content"][-1]["cache_control"] == cc  # the request's: the last block
    many = [{"type": "input_text", "text": f"part {n}", "cache_control": cc} for n in range(5)]
    rejected("input[0].content[4].cache_control", input=[{"role": "user", "content": many}])


def test_user_and_safety_identifier_and_metadata():
    assert translate(user="user-4711").payload["metadata"] == {"user_id": "user-4711"}
    assert translate(safety_identifier="sid-1").user == "sid-1"
    assert "metadata" not in translate(user="someone@example.com").payload
    t = translate(metadata={"run": "42"})
    assert t.settings["metadata"] == {"run": "42"} and "run" not in json.dumps(t.payload)
    rejected("metadata", metadata={"k": 1})
    rejected("metadata", metadata={str(i): "v" for i in range(17)})


def test_accepted_and_ignored_fields():
    t = translate(prompt_cache_key="k", service_tier="auto", client_metadata={"a": "b"}, truncation="disabled",
                  prompt_cache_retention="24h", stream=True, stream_options={"include_obfuscation": False},
                  include=["reasoning.encrypted_content", "web_search_call.action.sources"], top_logprobs=0,
                  background=False, max_tool_calls=None)
    assert t.stream and t.payload["stream"] is True
    assert t.settings["prompt_cache_key"] == "k" and t.settings["service_tier"] == "auto"


@pytest.mark.parametrize("param,body", [
    ("input", {"input": []}),
    ("input", {"input": 5}),
    ("input[0]", {"input": ["hi"]}),
    ("input[0].role", {"input": [{"type": "message", "role": "robot", "content": "x"}]}),
    ("input[0].content", {"input": [{"type": "message", "role": "user", "content": "  "}]}),
    ("input[0].content[0]", {"input": [{"type": "message", "role": "user", "content": [{"type": "input_audio"}]}]}),
    ("input[0].content[0]", {"input": [{"type": "message", "role": "user", "content": [{"type": "input_file",
                                                                                        "file_id": "f"}]}]}),
    ("input[0].content[0].image_url", {"input": [{"role": "user", "content": [{"type": "input_image",
                                                                               "file_id": "file-1"}]}]}),
    ("input[1].arguments", {"input": [user("x"), {"type": "function_call", "call_id": "c", "name": "f",
                                                  "arguments": "{not json"}]}),
    ("input[1].call_id", {"input": [user("x"), {"type": "function_call_output", "output": "x"}]}),
    ("input[1].name", {"input": [user("x"), {"type": "function_call", "call_id": "c", "arguments": "{}"}]}),
    ("input[1].input", {"input": [user("x"), {"type": "custom_tool_call", "call_id": "c", "name": "p", "input": 3}]}),
    ("input[1].type", {"input": [user("x"), {"type": "telepathy"}]}),
    ("instructions", {"instructions": 42}),
    ("tools", {"tools": {"type": "function"}}),
    ("tools[0].type", {"tools": [{"type": "spaceship"}]}),
    ("tools[0].name", {"tools": [{"type": "function", "name": "bad name!"}]}),
    ("tools[0].parameters", {"tools": [{"type": "function", "name": "f", "parameters": {"type": "string"}}]}),
    ("tools[1].name", {"tools": [EXEC, EXEC]}),
    ("tools[0].tools", {"tools": [{"type": "namespace", "name": "ns", "tools": []}]}),
    ("tools[0].tools[0].type", {"tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]}]}),
    ("tools[0].format", {"tools": [{"type": "custom", "name": "p", "format": {"type": "regexp"}}]}),
    ("tool_choice", {"tool_choice": "sometimes"}),
    ("tool_choice", {"tool_choice": "required"}),
    ("parallel_tool_calls", {"parallel_tool_calls": "yes"}),
    ("max_output_tokens", {"max_output_tokens": "100"}),
    ("temperature", {"temperature": "hot"}),
    ("reasoning", {"reasoning": "high"}),
    ("text", {"text": "json"}),
    ("text.verbosity", {"text": {"verbosity": "chatty"}}),
    ("include", {"include": "reasoning.encrypted_content"}),
    ("include", {"include": ["message.output_text.logprobs"]}),
    ("include", {"include": ["everything"]}),
    ("store", {"store": "yes"}),
    ("stream", {"stream": 1}),
    ("stream_options", {"stream_options": {"include_obfuscation": True}}),
    ("truncation", {"truncation": "middle"}),
    ("previous_response_id", {"previous_response_id": 7}),
    ("background", {"background": True}),
    ("conversation", {"conversation": "conv_1"}),
    ("prompt", {"prompt": {"id": "pmpt_1"}}),
    ("max_tool_calls", {"max_tool_calls": 3}),
    ("top_logprobs", {"top_logprobs": 2}),
    ("user", {"user": 5}),
    ("frequency_penalty", {"frequency_penalty": 0}),
])
def test_bad_input_is_a_400_naming_the_field(param, body):
    rejected(param, **body)


# --- the response object ----------------------------------------------------------------------

def message(*content, stop_reason="end_turn", usage=None):
    return {"id": "msg_up", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6-up",
            "content": list(content), "stop_reason": stop_reason,
            "usage": usage or {"input_tokens": 100, "output_tokens": 50}}


def respond(msg, t=None, cost="0.001"):
    t = t or translate()
    usage = Usage(input_tokens=100, cache_write_5m=20, cache_write_1h=10, cache_read=300, output_tokens=50)
    return translate_message(msg, t, response_id=RESPONSE_ID, created_at=1764000000, completed_at=1764000001,
                             usage=usage, cost=cost)


def test_response_object_shape_usage_and_echoed_settings():
    t = translate(instructions="Be brief.", max_output_tokens=500, temperature=0.5, metadata={"a": "b"},
                  user="u1", store=False)
    r = respond(message({"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}), t)
    assert r["id"] == RESPONSE_ID and r["object"] == "response" and r["status"] == "completed"
    assert r["model"] == "claude-sonnet-4-6" and r["created_at"] == 1764000000 and r["error"] is None
    assert r["output"] == [{"id": "msg_0123456789abcdef0123456700", "type": "message", "status": "completed",
                            "role": "assistant", "content": [{"type": "output_text", "text": "Hello world",
                                                              "annotations": [], "logprobs": []}]}]
    assert r["usage"] == {"input_tokens": 430, "input_tokens_details": {"cached_tokens": 300, "cache_write_tokens": 30},
                          "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": 480, "cost": "0.001"}
    assert (r["instructions"], r["max_output_tokens"], r["temperature"], r["metadata"], r["user"], r["store"]) == (
        "Be brief.", 500, 0.5, {"a": "b"}, "u1", False)
    assert r["tools"] == [] and r["tool_choice"] == "auto" and r["text"]["format"] == {"type": "text"}


def test_max_tokens_is_incomplete_and_refusal_is_content_filter():
    r = respond(message({"type": "text", "text": "cut"}, stop_reason="max_tokens"))
    assert r["status"] == "incomplete" and r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["output"][0]["status"] == "incomplete"
    assert respond(message({"type": "text", "text": "no"}, stop_reason="refusal"))["incomplete_details"] == {
        "reason": "content_filter"}


def test_tool_calls_map_back_to_namespace_custom_and_function_items():
    t = translate(tools=[EXEC, NAMESPACE, APPLY_PATCH])
    r = respond(message(
        {"type": "text", "text": "On it."},
        {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__close_agent", "input": {"target": "nope"}},
        {"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {"input": "*** Begin Patch\n"}},
        {"type": "tool_use", "id": "toolu_3", "name": "exec_command", "input": {}},
        stop_reason="tool_use"), t)
    msg, ns_call, custom, plain = r["output"]
    assert msg["type"] == "message" and msg["content"][0]["text"] == "On it."
    assert ns_call == {"id": "fc_0123456789abcdef0123456701", "type": "function_call", "status": "completed",
                       "call_id": "toolu_1", "name": "close_agent", "arguments": '{"target":"nope"}',
                       "namespace": "multi_agent_v1"}
    assert custom["type"] == "custom_tool_call" and custom["input"] == "*** Begin Patch\n"
    assert custom["name"] == "apply_patch" and custom["call_id"] == "toolu_2" and "namespace" not in custom
    assert plain["arguments"] == "{}" and "namespace" not in plain
    assert r["status"] == "completed"


def test_reasoning_items_carry_summary_when_asked_and_encrypted_content_when_included():
    blocks = [thinking_block("Because.", "sig-1")]
    msg = message(*blocks, {"type": "text", "text": "Answer."},
                  usage={"input_tokens": 5, "output_tokens": 50, "output_tokens_details": {"thinking_tokens": 30}})
    t = translate(reasoning={"effort": "low", "summary": "auto"}, include=["reasoning.encrypted_content"])
    r = respond(msg, t)
    reasoning = r["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == [{"type": "summary_text", "text": "Because."}]
    assert decode_thinking(reasoning["encrypted_content"], "x") == blocks
    assert r["usage"]["output_tokens_details"] == {"reasoning_tokens": 30}
    # not included: the client does not get it, the stored object keeps it
    t2 = translate(reasoning={"effort": "low"})
    r2 = respond(msg, t2)
    assert r2["output"][0]["summary"] == [] and "encrypted_content" in r2["output"][0]
    assert "encrypted_content" not in client_view(r2, t2)["output"][0]


def test_json_mode_tool_input_is_the_message_text():
    t = translate(HAIKU, text={"format": {"type": "json_object"}})
    r = respond(message({"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {"answer": 42}},
                        stop_reason="tool_use"), t)
    assert [item["type"] for item in r["output"]] == ["message"]
    assert json.loads(r["output"][0]["content"][0]["text"]) == {"answer": 42}
