"""Keys never reach the logs or the request log (SPEC §7, §9).

A real gateway process, logging at DEBUG with uvicorn's access log on, answers good,
unknown, revoked and malformed keys and a failing upstream; then every line it wrote and
every field of every request record is searched for any piece of key material."""
from __future__ import annotations

import secrets
from decimal import Decimal

import httpx
import pytest

from billing.models import RequestRecord
from tokenhub_portal.accounts.services import revoke_key

from .conftest import _stop, all_priced, start_gateway, wait_until

UPSTREAM_KEY = "sk-ant-simulated"  # what start_gateway gives the gateway as ANTHROPIC_API_KEY
WINDOW = 12  # any run of this many characters of a secret counts as a leak


def secret_pieces(key: str) -> set[str]:
    """The key, its secret part, and every WINDOW-long run of the secret part (the
    display prefix alone, th- plus 8 characters, is public)."""
    secret = key.split("-", 1)[1] if key.startswith("th-") else key
    pieces = {key, secret}
    pieces.update(secret[i:i + WINDOW] for i in range(len(secret) - WINDOW + 1))
    return pieces


def leaks(text: str, keys: dict[str, str]) -> list[str]:
    return [name for name, key in keys.items() if any(piece in text for piece in secret_pieces(key))]


def chat(client: httpx.Client, key: str | None, marker: str = "", stream: bool = False, header="authorization"):
    headers = {}
    if key is not None:
        headers = {"authorization": f"Bearer {key}"} if header == "authorization" else {"x-api-key": key}
    body = {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": stream,
            "messages": [{"role": "user", "content": f"hello {marker}"}]}
    response = client.post("/api/v1/chat/completions", json=body, headers=headers)
    response.read()
    return response


@pytest.mark.django_db(transaction=True)
def test_no_key_material_in_logs_or_records(seeded, make_key, simulator_url, tmp_path):
    good = make_key("secrecy", name="good", monthly_limit=Decimal("50"))
    revoked = make_key("secrecy", name="soon-revoked")
    keys = {"good": good.plaintext, "revoked": revoked.plaintext,
            "unknown": "th-" + secrets.token_urlsafe(32), "upstream": UPSTREAM_KEY}
    log_file = tmp_path / "gateway.log"
    url, proc = start_gateway(simulator_url, log_file=log_file, server_args=("--log-level", "debug", "--access-log"),
                              LOG_LEVEL="DEBUG", ANTHROPIC_MAX_RETRIES="1")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            statuses = {
                "plain": chat(client, keys["good"]).status_code,
                "stream": chat(client, keys["good"], stream=True).status_code,
                "x-api-key": chat(client, keys["good"], header="x-api-key").status_code,
                "upstream 500": chat(client, keys["good"], "[[sim:error=500]]").status_code,
                "upstream 529": chat(client, keys["good"], "[[sim:error=529]]").status_code,
                "upstream 401": chat(client, keys["good"], "[[sim:error=401]]").status_code,
                "upstream 400": chat(client, keys["good"], "[[sim:error=400]]").status_code,
                "mid-stream error": chat(client, keys["good"], "[[sim:midstream_error]]", stream=True).status_code,
                "dropped stream": chat(client, keys["good"], "[[sim:drop]]", stream=True).status_code,
                "bad request": client.post("/api/v1/chat/completions", content=b"{not json",
                                           headers={"authorization": f"Bearer {keys['good']}"}).status_code,
                "unknown key": chat(client, keys["unknown"]).status_code,
                "unknown key, x-api-key": chat(client, keys["unknown"], header="x-api-key").status_code,
                "malformed key": chat(client, keys["unknown"][3:]).status_code,
                "revoked, cached first": chat(client, keys["revoked"]).status_code,
            }
            revoke_key(revoked.api_key)
            statuses["revoked"] = wait_until(lambda: chat(client, keys["revoked"]).status_code == 401 and 401)
            for path in ("/api/v1/key", "/api/v1/models", "/api/v1/generation?id=chatcmpl-nope"):
                for name in ("good", "unknown", "revoked"):
                    statuses[f"{path} {name}"] = client.get(path, headers={"authorization": f"Bearer {keys[name]}"}).status_code
    finally:
        _stop(proc)

    assert statuses["plain"] == statuses["stream"] == statuses["x-api-key"] == 200
    assert statuses["upstream 500"] >= 500 and statuses["upstream 529"] == 503 and statuses["bad request"] == 400
    assert statuses["unknown key"] == statuses["malformed key"] == statuses["revoked"] == 401
    assert statuses["/api/v1/key unknown"] == statuses["/api/v1/key revoked"] == 401

    log = log_file.read_text(errors="replace")
    # The scan is only worth something if the gateway's logging reached the file.
    assert "retrying" in log and "POST /api/v1/chat/completions" in log and "/api/v1/key" in log
    assert leaks(log, keys) == [], [line for line in log.splitlines() if leaks(line, keys)][:5]

    records = list(RequestRecord.objects.filter(team__name="secrecy").values())
    assert len(records) >= 10 and {r["status"] for r in records} >= {"success", "error"}
    for record in records:
        text = " ".join(str(v) for v in record.values())
        assert leaks(text, keys) == [], record
    all_priced()
