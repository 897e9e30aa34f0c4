"""Claude Code itself (the npm package, run headless as `claude -p`) answers through the
gateway against the simulator, and its calls are billed."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from billing.models import RequestRecord

from .conftest import wait_until

PINNED = {"ANTHROPIC_MODEL": "claude-sonnet-4-6", "ANTHROPIC_DEFAULT_OPUS_MODEL": "claude-opus-4-7",
          "ANTHROPIC_DEFAULT_SONNET_MODEL": "claude-sonnet-4-6", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "claude-haiku-4-5"}


@pytest.fixture
def claude(node_packages) -> Path:
    return node_packages / "node_modules" / ".bin" / "claude"


def run_claude(claude: Path, live, home: Path, prompt: str, **env: str) -> subprocess.CompletedProcess:
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    environment = {
        "PATH": os.environ["PATH"], "HOME": str(home), "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": live.url, "ANTHROPIC_AUTH_TOKEN": live.key, "ANTHROPIC_API_KEY": "",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0", **env,
    }
    return subprocess.run([str(claude), "-p", prompt, "--output-format", "json"], cwd=work, env=environment,
                          capture_output=True, text=True, timeout=180)


def test_claude_code_answers_through_the_gateway_and_is_billed(claude, live, tmp_path):
    result = run_claude(claude, live, tmp_path, "say hi", **PINNED)
    assert result.returncode == 0, result.stderr + result.stdout
    output = json.loads(result.stdout)
    assert output["is_error"] is False and "Simulated reply" in output["result"], output
    record = wait_until(lambda: RequestRecord.objects.filter(api_key=live.issued.api_key, api="messages").first())
    assert record.status == "success" and record.streamed and record.requested_model == "claude-sonnet-4-6"
    # Claude Code's system prompt and tools went upstream unchanged; it marks them for caching,
    # so most of the prompt is a cache write (billed at 1.25× input), not uncached input
    assert record.tokens.prompt_tokens > 1000 and record.cache_write_5m_tokens > 1000
    charge = live.charge_of(record.generation_id)
    assert charge.amount > 0 and charge.request.end_user  # metadata.user_id, kept for attribution


def test_claude_codes_own_default_model_gets_an_error_naming_the_models_to_pin(claude, live, tmp_path):
    """Without pinned models Claude Code asks for a model newer than the table; the gateway's
    404 names the models the key may use and how to pin them."""
    result = run_claude(claude, live, tmp_path, "say hi")
    output = json.loads(result.stdout)
    assert output["is_error"] is True and "selected model" in output["result"], output
    record = wait_until(lambda: RequestRecord.objects.filter(api_key=live.issued.api_key, api="messages").first())
    assert record.status == "error" and record.http_status == 404
    assert "claude-sonnet-4-6" in record.error_message and "ANTHROPIC_MODEL" in record.error_message
