"""The official openai and Anthropic npm packages work unchanged against the gateway."""
import os
import subprocess


def test_openai_node_sdk_smoke(live, node_packages):
    env = {**os.environ, "TOKENHUB_BASE_URL": f"{live.url}/api/v1", "TOKENHUB_KEY": live.key}
    result = subprocess.run(["node", "smoke.mjs"], cwd=node_packages, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "node smoke: ok" in result.stdout


def test_anthropic_node_sdk_smoke(live, node_packages):
    env = {**os.environ, "TOKENHUB_ROOT": live.url, "TOKENHUB_KEY": live.key}
    result = subprocess.run(["node", "anthropic_smoke.mjs"], cwd=node_packages, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "anthropic node smoke: ok" in result.stdout


def test_openai_node_sdk_responses_smoke(live, node_packages):
    env = {**os.environ, "TOKENHUB_BASE_URL": f"{live.url}/v1", "TOKENHUB_KEY": live.key}
    result = subprocess.run(["node", "responses_smoke.mjs"], cwd=node_packages, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "node responses smoke: ok" in result.stdout
