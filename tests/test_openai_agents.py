"""The OpenAI Agents SDK with its default model (the Responses API) runs an agent with one
function tool to completion through the gateway, plain and streamed."""
import asyncio

import agents
import pytest
from openai import AsyncOpenAI

from billing.models import RequestRecord

PROMPT = "What is the weather in Paris? [[sim:tool]]"


def weather_agent(calls: list[str]):
    @agents.function_tool
    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    return agents.Agent(name="Assistant", instructions="You are helpful.", model="claude-sonnet-4-6",
                        tools=[get_weather])


def run_config(live) -> "agents.RunConfig":
    client = AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.key, max_retries=0)
    provider = agents.OpenAIProvider(openai_client=client, use_responses=True)
    return agents.RunConfig(model_provider=provider, tracing_disabled=True)


@pytest.mark.parametrize("streamed", [False, True])
def test_agent_with_a_function_tool_runs_to_completion(live, streamed):
    calls: list[str] = []
    agent = weather_agent(calls)

    async def run():
        if not streamed:
            return await agents.Runner.run(agent, PROMPT, run_config=run_config(live))
        result = agents.Runner.run_streamed(agent, PROMPT, run_config=run_config(live))
        async for _ in result.stream_events():
            pass
        return result

    result = asyncio.run(run())
    assert calls == ["Paris"]
    assert result.final_output.startswith("Simulated reply to: sunny in Paris")
    usage = result.context_wrapper.usage
    assert usage.requests == 2 and usage.output_tokens > 0
    records = RequestRecord.objects.filter(team=live.issued.api_key.team, api="responses").order_by("created")
    assert [(r.status, r.streamed, r.finish_reason) for r in records] == [
        ("success", streamed, "tool_calls"), ("success", streamed, "stop")]
    assert sum(r.input_tokens + r.output_tokens for r in records) == usage.input_tokens + usage.output_tokens
