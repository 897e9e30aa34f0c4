"""Codex CLI (``@openai/codex`` from npm, installed by tests/node/package.json) runs
``codex exec`` against the gateway as its users configure it: a custom model provider with
``wire_api = "responses"``, the key from an environment variable, a private CODEX_HOME."""
import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import RequestRecord

CONFIG = """\
model = "claude-sonnet-4-6"
model_provider = "tokenhub"
model_reasoning_effort = "medium"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.tokenhub]
name = "TokenHub"
base_url = "{base_url}"
env_key = "TOKENHUB_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


@pytest.fixture
def codex(node_packages) -> Path:
    return node_packages / "node_modules" / ".bin" / "codex"


def run_codex(codex, live, tmp_path, prompt: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(CONFIG.format(base_url=f"{live.url}/v1"))
    env = {**os.environ, "CODEX_HOME": str(home), "HOME": str(tmp_path), "TOKENHUB_API_KEY": live.key,
           "RUST_LOG": "error", "NO_COLOR": "1"}
    result = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--sandbox", "read-only", "--color", "never",
         "--json", prompt],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def test_codex_exec_answers_through_the_gateway_and_is_billed(codex, live, tmp_path):
    before = set(RequestRecord.objects.values_list("generation_id", flat=True))
    result, events = run_codex(codex, live, tmp_path, "say hi [[sim:words=7,thinking_words=5]]")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    messages = [e["item"]["text"] for e in events
                if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages == ["The quick brown fox jumps over the"]
    reasoning = [e["item"]["text"] for e in events
                 if e.get("type") == "item.completed" and e["item"].get("type") == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]  # model_reasoning_effort: thinking on, its summary shown
    turn = next(e for e in events if e.get("type") == "turn.completed")
    assert turn["usage"]["output_tokens"] == 7 + 5 and turn["usage"]["reasoning_output_tokens"] > 0
    assert turn["usage"]["input_tokens"] > 1000  # Codex's own prompt

    records = RequestRecord.objects.exclude(generation_id__in=before).filter(team=live.issued.api_key.team)
    record = records.get()  # exactly one model turn, one POST
    assert record.api == "responses" and record.status == "success" and record.streamed
    assert record.generation_id.startswith("resp_") and record.output_tokens == 12
    assert record.input_tokens == turn["usage"]["input_tokens"]
    charge = live.charge_of(record.generation_id)
    assert charge.amount == (Decimal(record.input_tokens) * 3 + Decimal(12) * 15) / 1_000_000


def test_codex_runs_a_tool_the_model_calls_and_sends_its_output_back(codex, live, tmp_path):
    """The simulator calls Codex's first tool (exec_command); Codex parses the function_call
    item, runs it and sends a second request whose function_call_output reaches upstream
    (the simulator's answer quotes it), with the reasoning item of the first turn: the
    simulator checks the thinking's signature, as Anthropic does, and the turn succeeds."""
    before = set(RequestRecord.objects.values_list("generation_id", flat=True))
    result, events = run_codex(codex, live, tmp_path, "list files [[sim:tool]]")
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    messages = [e["item"]["text"] for e in events
                if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
    assert messages[0] == "Let me check." and messages[-1].startswith("Simulated reply to: ")
    assert sum(e.get("type") == "item.completed" and e["item"].get("type") == "reasoning" for e in events) == 2
    assert "exec_command" not in messages[-1] and "unsupported call" not in messages[-1]
    records = RequestRecord.objects.exclude(generation_id__in=before).filter(team=live.issued.api_key.team)
    assert [(r.api, r.status, r.finish_reason) for r in records.order_by("created")] == [
        ("responses", "success", "tool_calls"), ("responses", "success", "stop")]
