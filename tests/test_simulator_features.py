"""What Claude Code, the Anthropic SDKs and our own features need from the simulator:
thinking with verifiable signatures, stateful prompt caching, count_tokens, models,
beta headers, strict validation and the request recorder — driven with the official
``anthropic`` SDK as a client would."""
from __future__ import annotations

import uuid

import anthropic
import httpx
import orjson
import pytest

from simulator import signing
from tests.test_simulator import MODEL, WEATHER, raw_post, running_simulator, sse_events, user

THINKING = {"type": "enabled", "budget_tokens": 1024}
CONSIDERATIONS = ("Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/"
                  "extended-thinking#important-considerations-when-using-extended-thinking")


@pytest.fixture(scope="module")
def base_url():
    yield from running_simulator()


@pytest.fixture(scope="module")
def client(base_url):
    return anthropic.Anthropic(api_key="sk-test", base_url=base_url, max_retries=0)


def tag() -> str:
    """Makes a prompt no other test sends (the prompt cache is shared by the module's server)."""
    return uuid.uuid4().hex[:10]


def error_message(caught: pytest.ExceptionInfo) -> str:
    return caught.value.body["error"]["message"]


def words(text: str) -> int:
    return len(text.split(" ")) if text else 0


def recorded(base_url: str, last: int = 1) -> list[dict]:
    response = httpx.get(f"{base_url}/_sim/requests", params={"last": last})
    assert response.status_code == 200
    return response.json()["data"]


# --------------------------------------------------------------------------- thinking


def test_thinking_block_opens_the_answer_and_counts_as_output(client):
    message = client.messages.create(model=MODEL, max_tokens=2000, thinking=THINKING, messages=user("What is 2+2?"))
    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    assert thinking.thinking.startswith("The user wrote: What is 2+2.")
    assert words(thinking.thinking) == 32  # the default for effort "high"
    assert signing.thinking_signature_ok(thinking.thinking, thinking.signature)
    assert message.usage.output_tokens == 32 + words(text.text)


def test_thinking_streams_as_deltas_then_signature(client, base_url):
    kwargs = dict(model=MODEL, max_tokens=2000, thinking=THINKING, messages=user("Stream your thoughts"))
    seen = []
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            seen.append(event.type)
        final = stream.get_final_message()
    thinking = final.content[0]
    assert thinking.type == "thinking" and words(thinking.thinking) == 32
    assert signing.thinking_signature_ok(thinking.thinking, thinking.signature)
    assert seen.count("thinking") == 32 and seen.count("signature") == 1
    assert final.usage.output_tokens == 32 + words(final.content[1].text)

    events = sse_events(base_url, {**kwargs, "messages": user("Stream your thoughts")})
    block_zero = [(name, data) for name, data in events if data.get("index") == 0]
    assert block_zero[0][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [data["delta"]["type"] for _, data in block_zero[1:-1]] == ["thinking_delta"] * 32 + ["signature_delta"]
    assert block_zero[-1][0] == "content_block_stop"
    assert [name for name, _ in events[:3]] == ["message_start", "content_block_start", "ping"]


def test_thinking_length_follows_marker_effort_and_budget(client):
    marked = client.messages.create(model=MODEL, max_tokens=3000, thinking=THINKING,
                                    messages=user("Think [[sim:thinking_words=50]]"))
    assert words(marked.content[0].thinking) == 50
    capped = client.messages.create(model=MODEL, max_tokens=3000, thinking=THINKING,
                                    messages=user("Think [[sim:thinking_words=5000]]"))
    assert words(capped.content[0].thinking) == 1024
    low = client.messages.create(model=MODEL, max_tokens=3000, thinking={"type": "adaptive"},
                                 output_config={"effort": "low"}, messages=user("Think"))
    assert words(low.content[0].thinking) == 8
    cut = client.messages.create(model=MODEL, max_tokens=20, thinking={"type": "adaptive"},
                                 messages=user("Think [[sim:thinking_words=18]]"))
    assert [block.type for block in cut.content] == ["thinking", "text"]
    assert words(cut.content[1].text) == 2 and cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 20


def test_display_omitted_returns_only_the_signature(client, base_url):
    thinking = {**THINKING, "display": "omitted"}
    message = client.messages.create(model=MODEL, max_tokens=2000, thinking=thinking, messages=user("Hide it"))
    assert message.content[0].thinking == "" and message.content[0].signature
    assert message.usage.output_tokens == 32 + words(message.content[1].text)  # billed all the same
    events = sse_events(base_url, {"model": MODEL, "max_tokens": 2000, "thinking": thinking, "messages": user("x")})
    deltas = [data["delta"] for _, data in events if data.get("index") == 0 and "delta" in data]
    assert deltas[0] == {"type": "thinking_delta", "thinking": ""} and deltas[1]["type"] == "signature_delta"


def test_redacted_thinking_marker(client, base_url):
    kwargs = dict(model=MODEL, max_tokens=2000, thinking=THINKING, messages=user("Secret [[sim:redacted_thinking]]"))
    message = client.messages.create(**kwargs)
    assert [block.type for block in message.content] == ["thinking", "redacted_thinking", "text"]
    assert signing.redacted_data_ok(message.content[1].data)
    assert message.usage.output_tokens == 32 + 32 + words(message.content[2].text)
    events = sse_events(base_url, {**kwargs, "messages": user("Secret [[sim:redacted_thinking]]")})
    redacted = [data for _, data in events if data.get("index") == 1]
    assert redacted[0]["content_block"]["type"] == "redacted_thinking" and redacted[0]["content_block"]["data"]
    assert [data["type"] for data in redacted] == ["content_block_start", "content_block_stop"]
    with client.messages.stream(**kwargs) as stream:
        assert [block.type for block in stream.get_final_message().content][:2] == ["thinking", "redacted_thinking"]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=100, messages=user("No thinking [[sim:redacted_thinking]]"))
    assert error_message(caught) == "x-sim: redacted_thinking needs thinking enabled in the request"


def _tool_turn(client) -> list:
    first = client.messages.create(model=MODEL, max_tokens=2000, thinking=THINKING, tools=[WEATHER],
                                   messages=user("Weather in Oslo? [[sim:tool,redacted_thinking]]"))
    assert [block.type for block in first.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    return [block.model_dump(exclude_none=True) for block in first.content]


def _second_turn(client, assistant: list, thinking: dict | None = THINKING):
    tool_use = assistant[-1]
    return client.messages.create(
        model=MODEL, max_tokens=2000, tools=[WEATHER], **({"thinking": thinking} if thinking else {}),
        messages=[*user("Weather in Oslo?"), {"role": "assistant", "content": assistant},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "4 C"}]}],
    )


def test_thinking_round_trip_in_a_tool_loop(client):
    assistant = _tool_turn(client)
    assert _second_turn(client, assistant).content[0].type == "thinking"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda blocks: blocks[0].update(thinking=blocks[0]["thinking"] + " (edited)"),
         "messages.1.content.0: Invalid `signature` in `thinking` block"),
        (lambda blocks: blocks[0].update(signature=blocks[0]["signature"][:-4] + "AAA="),
         "messages.1.content.0: Invalid `signature` in `thinking` block"),
        (lambda blocks: blocks[0].update(signature=""), "messages.1.content.0: Invalid `signature` in `thinking` block"),
        (lambda blocks: blocks[0].pop("signature"), "messages.1.content.0.thinking.signature: Field required"),
        (lambda blocks: blocks[1].update(data="AAAA" + blocks[1]["data"][4:]),
         "messages.1.content.1: Invalid `data` in `redacted_thinking` block"),
        (lambda blocks: blocks[0].update(cache_control={"type": "ephemeral"}),
         "messages.1.content.0.thinking.cache_control: Extra inputs are not permitted"),
    ],
)
def test_altered_thinking_is_refused_like_the_real_api(client, change, message):
    assistant = _tool_turn(client)
    change(assistant)
    with pytest.raises(anthropic.BadRequestError) as caught:
        _second_turn(client, assistant)
    assert error_message(caught) == message


def test_tool_turn_must_start_with_its_thinking(client):
    assistant = _tool_turn(client)[2:]  # thinking dropped, as buggy gateways do
    with pytest.raises(anthropic.BadRequestError) as caught:
        _second_turn(client, assistant)
    assert error_message(caught).startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is "
        "enabled, a final `assistant` message must start with a thinking block")
    assert _second_turn(client, assistant, thinking=None).content[-1].type == "text"  # fine without thinking


def test_final_assistant_message_with_thinking_needs_thinking(client):
    assistant = _tool_turn(client)[:1]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=100,
                               messages=[*user("Hi"), {"role": "assistant", "content": assistant}])
    assert error_message(caught) == (
        "messages.1.content.0: When thinking is disabled, an `assistant` message in the final position cannot "
        "contain `thinking`. To use thinking blocks, enable `thinking` in your request.")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"thinking": THINKING, "temperature": 0.5},
         f"`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. {CONSIDERATIONS}"),
        ({"thinking": THINKING, "top_k": 5}, f"`top_k` must be unset when thinking is enabled. {CONSIDERATIONS}"),
        ({"thinking": THINKING, "tools": [WEATHER], "tool_choice": {"type": "any"}},
         "Thinking may not be enabled when tool_choice forces tool use."),
        ({"thinking": {"type": "adaptive"}, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"}},
         "Thinking may not be enabled when tool_choice forces tool use."),
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}},
         "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
        ({"thinking": {"type": "enabled"}}, "thinking.enabled.budget_tokens: Field required"),
        ({"thinking": {"type": "adaptive", "budget_tokens": 2048}},
         "thinking.adaptive.budget_tokens: Extra inputs are not permitted"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}},
         "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
         "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"),
        ({"thinking": {"type": "sometimes"}},
         "thinking: Input tag 'sometimes' found using 'type' does not match any of the expected tags: "
         "'enabled', 'disabled', 'adaptive'"),
        ({"thinking": THINKING, "model": "claude-opus-4-7"},
         '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
         '"output_config.effort" to control thinking behavior.'),
        ({"thinking": {"type": "adaptive"}, "model": "claude-haiku-4-5"},
         "adaptive thinking is not supported on this model"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "extreme"}},
         "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"),
    ],
)
def test_thinking_rules(base_url, extra, message):
    response = raw_post(base_url, {"model": MODEL, "max_tokens": 4000, "messages": user("Hi"), **extra})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_adaptive_thinking_and_disabled(client):
    for model in ("claude-opus-4-7", "claude-sonnet-4-6", "claude-opus-5-5"):
        message = client.messages.create(model=model, max_tokens=500, thinking={"type": "adaptive"},
                                         output_config={"effort": "max"}, messages=user("Hi"))
        assert message.content[0].type == "thinking" and words(message.content[0].thinking) == 64
    plain = client.messages.create(model=MODEL, max_tokens=100, thinking={"type": "disabled"},
                                   temperature=0.2, messages=user("Hi"))
    assert [block.type for block in plain.content] == ["text"]


# --------------------------------------------------------------------------- prompt caching


def ceil4(size: int) -> int:
    return -(-size // 4)


def test_cache_write_then_read(client):
    text = f"You are terse. {tag()} " + "x" * 400
    system = [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model=MODEL, max_tokens=50, system=system, messages=user("Hi"))
    total = client.messages.count_tokens(model=MODEL, system=system, messages=user("Hi")).input_tokens
    first = client.messages.create(**kwargs).usage
    assert first.cache_creation_input_tokens == first.cache_creation.ephemeral_5m_input_tokens == ceil4(len(text))
    assert first.cache_creation.ephemeral_1h_input_tokens == 0 and first.cache_read_input_tokens == 0
    assert first.input_tokens + first.cache_creation_input_tokens == total
    second = client.messages.create(**kwargs).usage
    assert second.cache_read_input_tokens == ceil4(len(text))
    assert second.cache_creation_input_tokens == 0 and second.input_tokens == first.input_tokens


def test_cache_splits_1h_and_5m_writes_and_reads_the_longest_prefix(client):
    tool = {**WEATHER, "description": f"Current weather {tag()}", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    plain_tool = {key: value for key, value in tool.items() if key != "cache_control"}
    tool_bytes = len(orjson.dumps([plain_tool]))

    def ask(system_text: str):
        system = [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral", "ttl": "5m"}}]
        return client.messages.create(model=MODEL, max_tokens=50, tools=[tool], system=system, messages=user("Hi")).usage

    first = ask("System one. " * 20)
    assert first.cache_creation.ephemeral_1h_input_tokens == ceil4(tool_bytes)
    assert first.cache_creation.ephemeral_5m_input_tokens == ceil4(tool_bytes + 240) - ceil4(tool_bytes)
    assert first.cache_read_input_tokens == 0
    repeat = ask("System one. " * 20)
    assert repeat.cache_read_input_tokens == ceil4(tool_bytes + 240) and repeat.cache_creation_input_tokens == 0
    other_system = ask("System two. " * 20)
    assert other_system.cache_read_input_tokens == ceil4(tool_bytes)  # the tools prefix is still cached
    assert other_system.cache_creation.ephemeral_5m_input_tokens == ceil4(tool_bytes + 240) - ceil4(tool_bytes)
    assert other_system.cache_creation.ephemeral_1h_input_tokens == 0


def test_growing_conversation_reads_the_previous_turn(client):
    first_text = f"Read this document {tag()} " + "y" * 200
    first_turn = [{"role": "user", "content": [
        {"type": "text", "text": first_text, "cache_control": {"type": "ephemeral"}}]}]
    first = client.messages.create(model=MODEL, max_tokens=50, messages=first_turn).usage
    assert first.cache_creation_input_tokens == ceil4(len(first_text))
    reply, question = "A reply.", "And now a follow-up question?"
    second_turn = [
        {"role": "user", "content": [{"type": "text", "text": first_text}]},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": [{"type": "text", "text": question, "cache_control": {"type": "ephemeral"}}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=50, messages=second_turn).usage
    prompt = len(first_text) + len(reply) + len(question)
    assert second.cache_read_input_tokens == ceil4(len(first_text))  # found by looking back from the breakpoint
    assert second.cache_creation.ephemeral_5m_input_tokens == ceil4(prompt) - ceil4(len(first_text))


def test_changing_thinking_invalidates_cached_messages_not_system(client):
    system_text = f"Stable system {tag()} " + "s" * 100
    system = [{"type": "text", "text": system_text, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    messages = [{"role": "user", "content": [{"type": "text", "text": "Question " + "q" * 100,
                                              "cache_control": {"type": "ephemeral"}}]}]

    def ask(**thinking):
        return client.messages.create(model=MODEL, max_tokens=2000, system=system, messages=messages, **thinking).usage

    everything = ceil4(len(system_text) + 109)
    assert ask().cache_creation_input_tokens == everything
    assert ask().cache_read_input_tokens == everything
    with_thinking = ask(thinking=THINKING)
    assert with_thinking.cache_read_input_tokens == ceil4(len(system_text))
    assert with_thinking.cache_creation.ephemeral_5m_input_tokens == everything - ceil4(len(system_text))
    assert ask(thinking=THINKING).cache_read_input_tokens == everything


def test_top_level_cache_control_marks_the_last_block(client, base_url):
    kwargs = dict(model=MODEL, max_tokens=50, system=f"Automatic {tag()}", messages=user("Cache all of this"),
                  cache_control={"type": "ephemeral", "ttl": "1h"})
    total = client.messages.count_tokens(**{k: v for k, v in kwargs.items() if k != "max_tokens"}).input_tokens
    first = client.messages.create(**kwargs).usage
    assert first.cache_creation.ephemeral_1h_input_tokens == total - 8 and first.input_tokens == 8
    events = sse_events(base_url, kwargs)
    start_usage = events[0][1]["message"]["usage"]
    assert start_usage["cache_read_input_tokens"] == total - 8 and start_usage["input_tokens"] == 8


def test_cache_minimum_markers_and_reset(client, base_url):
    system = [{"type": "text", "text": f"Short {tag()}", "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model=MODEL, max_tokens=50, system=system, messages=user("Hi"))
    too_short = client.messages.create(**kwargs, extra_headers={"x-sim": "cache_min=1024"}).usage
    assert too_short.cache_creation_input_tokens == 0 and too_short.cache_read_input_tokens == 0
    written = client.messages.create(**kwargs).usage.cache_creation_input_tokens
    assert written > 0
    both = client.messages.create(**kwargs, extra_headers={"x-sim": "cache_read=1000,cache_write_1h=7"}).usage
    assert both.cache_read_input_tokens == written + 1000
    assert both.cache_creation_input_tokens == both.cache_creation.ephemeral_1h_input_tokens == 7
    assert httpx.delete(f"{base_url}/_sim/cache").status_code == 200
    assert client.messages.create(**kwargs).usage.cache_creation_input_tokens == written


def _system(*ttls: str) -> list[dict]:
    return [{"type": "text", "text": f"Block {i}", "cache_control": {"type": "ephemeral", "ttl": ttl}}
            for i, ttl in enumerate(ttls)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"system": _system("1h", "1h", "5m", "5m", "5m")},
         "A maximum of 4 blocks with cache_control may be provided. Found 5."),
        ({"system": _system("5m"), "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]},
         "messages.0.content.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' "
         "cache_control block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."),
        ({"tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}}], "system": _system("1h")},
         "system.0.cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control "
         "block. Note that blocks are processed in the following order: `tools`, `system`, `messages`."),
        ({"system": _system("5m"), "cache_control": {"type": "ephemeral", "ttl": "1h"}},
         "cache_control.ttl: a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. "
         "Note that blocks are processed in the following order: `tools`, `system`, `messages`."),
        ({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": "10m"}}]}]},
         "messages.0.content.0.text.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"),
        ({"system": [{"type": "text", "text": "Hi", "cache_control": {"type": "persistent"}}]},
         "system.0.cache_control: Input tag 'persistent' found using 'type' does not match any of the expected "
         "tags: 'ephemeral'"),
        ({"system": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "scope": "global"}}]},
         "system.0.cache_control.ephemeral.scope: Extra inputs are not permitted"),
        ({"tools": [{**WEATHER, "cache_control": {"ttl": "1h"}}]},
         "tools.0.custom.cache_control: Unable to extract tag using discriminator 'type'"),
    ],
)
def test_cache_control_rules(base_url, extra, message):
    response = raw_post(base_url, {"model": MODEL, "max_tokens": 50, "messages": user("Hi"), **extra})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_cache_scope_needs_its_beta(base_url):
    body = {"model": MODEL, "max_tokens": 50, "messages": user("Hi"),
            "system": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "scope": "global"}}]}
    assert raw_post(base_url, body, {"anthropic-beta": "claude-code-20250219,prompt-caching-scope-2026-01-05"}).is_success


# --------------------------------------------------------------------------- count_tokens


def test_count_tokens_matches_messages(client, base_url):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    prompt = dict(model=MODEL, system="Be brief.", tools=[WEATHER],
                  messages=[{"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}])
    counted = client.messages.count_tokens(**prompt)
    assert counted.input_tokens == client.messages.create(max_tokens=50, **prompt).usage.input_tokens
    beta = client.beta.messages.count_tokens(**prompt, betas=["context-1m-2025-08-07"])
    assert beta.input_tokens == counted.input_tokens
    entry = recorded(base_url)[0]
    assert (entry["path"], entry["query"]) == ("/v1/messages/count_tokens", "beta=true")
    assert "context-1m-2025-08-07" in entry["anthropic_beta"].split(",")


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": MODEL, "max_tokens": 10, "messages": user("Hi")}, 400, "max_tokens: Extra inputs are not permitted"),
        ({"model": MODEL, "stream": True, "messages": user("Hi")}, 400, "stream: Extra inputs are not permitted"),
        ({"model": MODEL}, 400, "messages: Field required"),
        ({"messages": user("Hi")}, 400, "model: Field required"),
        ({"model": MODEL, "messages": user("Hi"), "thinking": {"type": "enabled", "budget_tokens": 5}}, 400,
         "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"),
    ],
)
def test_count_tokens_validates(base_url, body, status, message):
    response = httpx.post(f"{base_url}/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"})
    assert response.status_code == status and response.json()["error"]["message"] == message


def test_count_tokens_needs_a_key(base_url):
    response = httpx.post(f"{base_url}/v1/messages/count_tokens", json={"model": MODEL, "messages": user("Hi")})
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


# --------------------------------------------------------------------------- headers, recorder, strictness


def test_betas_accepted_unless_strict(client, base_url):
    headers = {"anthropic-beta": "interleaved-thinking-2025-05-14,made-up-2099-01-01"}
    assert client.messages.create(model=MODEL, max_tokens=20, messages=user("Hi"), extra_headers=headers).content
    for strict in ({"x-sim": "strict_betas"}, {}):
        marker = "" if strict else " [[sim:strict_betas]]"
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(model=MODEL, max_tokens=20, messages=user("Hi" + marker),
                                   extra_headers={**headers, **strict})
        assert error_message(caught) == (
            "Unexpected value(s) `made-up-2099-01-01` for the `anthropic-beta` header. Please consult our "
            "documentation at docs.anthropic.com or try again without the header.")
    beta = client.beta.messages.create(model=MODEL, max_tokens=20, messages=user("Hi [[sim:strict_betas]]"),
                                       betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
    assert beta.content[0].type == "text"
    entry = recorded(base_url)[0]
    assert (entry["path"], entry["query"], entry["status"]) == ("/v1/messages", "beta=true", 200)
    assert entry["anthropic_beta"] == "interleaved-thinking-2025-05-14,context-1m-2025-08-07"


def test_requests_are_recorded_as_received(base_url):
    body = {"model": MODEL, "max_tokens": 30, "metadata": {"user_id": "u-1"}, "messages": user(f"Record me {tag()}")}
    headers = {"x-api-key": "th-secret-key", "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219",
               "x-claude-code-session-id": "session-1"}
    response = httpx.post(f"{base_url}/v1/messages?beta=true", json=body, headers=headers)
    assert response.status_code == 200
    bad_request = httpx.post(f"{base_url}/v1/messages", content=b"{oops", headers={"x-api-key": "k"})
    assert bad_request.status_code == 400
    entry, failed = recorded(base_url, last=2)
    assert entry["request_id"] == response.headers["request-id"]
    assert (entry["method"], entry["path"], entry["query"], entry["status"]) == ("POST", "/v1/messages", "beta=true", 200)
    assert entry["anthropic_version"] == "2023-06-01" and entry["anthropic_beta"] == "claude-code-20250219"
    assert entry["x_api_key"] is True and entry["x_api_key_prefix"] == "th-" and entry["authorization"] is False
    assert entry["headers"]["x-claude-code-session-id"] == "session-1"
    assert "x-api-key" not in entry["headers"] and "th-secret-key" not in str(entry)
    assert entry["body"] == body
    assert (failed["body"], failed["status"]) == (None, 400)
    assert [e["request_id"] for e in recorded(base_url, last=200)][-2:] == [entry["request_id"], failed["request_id"]]
    assert httpx.get(f"{base_url}/_sim/requests", params={"last": 0}).status_code == 400


def test_unknown_top_level_field_and_key_checks(base_url):
    response = raw_post(base_url, {"model": MODEL, "max_tokens": 10, "messages": user("Hi"), "reasoning_effort": "low"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "reasoning_effort: Extra inputs are not permitted"
    empty_key = httpx.post(f"{base_url}/v1/messages", json={"model": MODEL, "max_tokens": 1, "messages": user("Hi")},
                           headers={"x-api-key": ""})
    assert empty_key.status_code == 401 and empty_key.json()["error"]["message"] == "invalid x-api-key"
    bearer_only = httpx.post(f"{base_url}/v1/messages", json={"model": MODEL, "max_tokens": 1, "messages": user("Hi")},
                             headers={"authorization": "Bearer sk-ant"})
    assert bearer_only.status_code == 401 and recorded(base_url)[0]["authorization"] is True


# --------------------------------------------------------------------------- models


def test_models_list_and_retrieve(client, base_url):
    page = client.models.list()
    ids = [model.id for model in page.data]
    assert ids[:3] == ["claude-opus-4-7", "claude-sonnet-4-6", "claude-opus-4-6"]
    assert all(model.type == "model" and model.display_name.startswith("Claude") for model in page.data)
    raw = httpx.get(f"{base_url}/v1/models", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}).json()
    assert set(raw) == {"data", "has_more", "first_id", "last_id"}
    assert (raw["has_more"], raw["first_id"], raw["last_id"]) == (False, ids[0], ids[-1])
    assert set(raw["data"][0]) >= {"type", "id", "display_name", "created_at"}
    first_two = client.models.list(limit=2)
    assert first_two.has_more is True and [m.id for m in first_two.data] == ids[:2]
    assert [model.id for model in client.models.list(limit=2)] == ids  # the SDK pages through after_id
    assert client.models.retrieve("claude-haiku-4-5").id == "claude-haiku-4-5-20251001"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("claude-nope")
    assert error_message(caught) == "model: claude-nope"
    assert httpx.get(f"{base_url}/v1/models").status_code == 401


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"tool_choice": "auto"}, "tool_choice: Input should be a valid dictionary or object to extract fields from"),
        ({"tool_choice": {"type": "required"}},
         "tool_choice: Input tag 'required' found using 'type' does not match any of the expected tags: "
         "'auto', 'any', 'tool', 'none'"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.tool.name: Field required"),
        ({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]},
         "messages.0.content.0: Unable to extract tag using discriminator 'type'"),
        ({"messages": [{"role": "user", "content": [{"type": ["text"], "text": "Hi"}]}]},
         "messages.0.content.0: Unable to extract tag using discriminator 'type'"),
        ({"system": [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral", "ttl": ["1h"]}}]},
         "system.0.cache_control.ephemeral.ttl: Input should be '5m' or '1h'"),
        ({"system": [{"type": "text", "text": "Hi", "cache_control": "ephemeral"}]},
         "system.0.cache_control: Input should be a valid dictionary"),
        ({"thinking": {"type": "adaptive", "display": ["x"]}},
         "thinking.adaptive.display: Input should be 'summarized' or 'omitted'"),
        ({"thinking": ["enabled"]}, "thinking: Input should be a valid dictionary"),
        ({"output_config": "high"}, "output_config: Input should be a valid dictionary"),
        ({"top_k": 1.5}, "top_k: Input should be a valid integer"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
    ],
)
def test_bad_shapes_get_a_400_never_a_500(base_url, extra, message):
    response = raw_post(base_url, {"model": MODEL, "max_tokens": 50, "messages": user("Hi"), **extra})
    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": message}


def test_bad_query_values(base_url):
    for url in ("/v1/models?limit=%C2%B2", "/v1/models?limit=0", "/v1/models?limit=1001", "/_sim/requests?last=x"):
        response = httpx.get(base_url + url, headers={"x-api-key": "k"})
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error", url
