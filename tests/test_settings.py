"""Bad configuration stops start-up with a message naming the variable."""
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tokenhub_portal.config import proxy_ssl_header

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


def readme_production_environment() -> dict[str, str]:
    """The `export NAME=value` lines of the first shell block of the README's Deploy section."""
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", deploy, re.S).group(1)
    env = {}
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:])
    return env


def test_readme_production_environment_passes_check_deploy():
    documented = readme_production_environment()
    assert {"SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE", "CSRF_TRUSTED_ORIGINS", "ALLOWED_HOSTS", "SECRET_KEY"} <= set(documented)
    # The README cannot print a secret: everything else is used exactly as documented.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **documented,
           "SECRET_KEY": secrets.token_urlsafe(50)}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout, result.stdout + result.stderr


def test_defaults_warn_under_check_deploy():
    """Without the production variables `check --deploy` does warn: the test above is not vacuous."""
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, capture_output=True,
                            text=True, env={"PATH": os.environ["PATH"], "SECRET_KEY": "x" * 60 + "abcdefgh",
                                            "ALLOWED_HOSTS": "gateway.example.com"})
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout


@pytest.mark.parametrize("raw, expected", [
    ("X-Forwarded-Proto", ("HTTP_X_FORWARDED_PROTO", "https")),
    ("X-Forwarded-Ssl: on", ("HTTP_X_FORWARDED_SSL", "on")),
    ("HTTP_X_FORWARDED_PROTO", ("HTTP_X_FORWARDED_PROTO", "https")),
])
def test_proxy_ssl_header_from_environment(raw, expected, monkeypatch):
    monkeypatch.setenv("SECURE_PROXY_SSL_HEADER", raw)
    assert proxy_ssl_header("SECURE_PROXY_SSL_HEADER") == expected
    monkeypatch.delenv("SECURE_PROXY_SSL_HEADER")
    assert proxy_ssl_header("SECURE_PROXY_SSL_HEADER") is None


def test_bad_proxy_ssl_header_names_the_variable():
    result = start(SECURE_PROXY_SSL_HEADER="x-forwarded proto")
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER" in result.stderr
