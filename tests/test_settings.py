"""Bad configuration stops start-up with a message naming the variable."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start(**env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update({"SECRET_KEY": "x", "DATABASE_URL": "sqlite:///:memory:"})
    env.pop("REDIS_URL", None)
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)


def test_defaults_start():
    assert start().returncode == 0


@pytest.mark.parametrize("name, value", [
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("ANTHROPIC_BASE_URL", "api.anthropic.com"),
    ("ANTHROPIC_TIMEOUT", "ten"),
    ("ANTHROPIC_MAX_RETRIES", "-1"),
    ("MAX_REQUEST_BYTES", "big"),
    ("DEBUG", "maybe"),
    ("DATABASE_URL", "nosuchdb://x"),
    ("RESPONSES_STORE", "sometimes"),
    ("RESPONSES_RETENTION_DAYS", "0"),
])
def test_bad_value_names_the_variable(name, value):
    result = start(**{name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_secret_key_required_outside_debug():
    result = start(SECRET_KEY=None, DEBUG="0")
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
    assert start(SECRET_KEY=None, DEBUG="1").returncode == 0
