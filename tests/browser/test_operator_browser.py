"""`make run` as a newcomer and an operator would use it, in a real browser: the server as
`manage.py serve` starts it (no Redis: eager tasks, in-process beat, polled changes), a
call shows up on the dashboard chart and the top-keys table within seconds, its sub-cent
cost is never shown as $0.00, and an operator suspends a team (its key gets 403 within 2
seconds) and resumes it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import openai
import pytest
from django.contrib.auth import get_user_model

from billing.models import Charge, RequestRecord
from tokenhub_portal.accounts.models import AuditEntry, Membership, Team
from tokenhub_portal.web.money import usd_text
from tokenhub_portal.web.services import issue_key

from ..conftest import ROOT, _wait_http, free_port, subprocess_env, wait_until
from .conftest import ARTIFACTS

PASSWORD = "make-run-browser-password-1"


@pytest.fixture
def make_run(transactional_db, seeded, simulator_url):
    """`manage.py serve` (what `make run` runs) on the test database, without Redis."""
    port = free_port()
    env = subprocess_env(REDIS_URL="", ANTHROPIC_API_KEY="sk-ant-simulated", ANTHROPIC_BASE_URL=simulator_url)
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/healthz", proc, timeout=60)
        yield url
    finally:
        wait_until(lambda: not RequestRecord.objects.filter(priced_at__isnull=True).exists(), timeout=30)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        assert "Periodic tasks run in-process" in out, out[-3000:]


def new_page(chromium, url):
    context = chromium.new_context(base_url=url, viewport={"width": 1280, "height": 1000})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
    page = context.new_page()
    page.set_default_timeout(15_000)
    return context, page


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()


def test_make_run_live_dashboard_small_money_and_operator_suspension(make_run, chromium):
    User = get_user_model()
    tag = uuid.uuid4().hex[:6]
    blue, green = Team.objects.create(name=f"blue-{tag}"), Team.objects.create(name=f"green-{tag}")
    owner = User.objects.create_user(f"owner-{tag}", "owner@example.com", PASSWORD)
    Membership.objects.create(team=blue, user=owner, role="owner")
    User.objects.create_user(f"operator-{tag}", "ops@example.com", PASSWORD, is_staff=True)
    blue_key = issue_key(blue, name="blue-key")
    green_key = issue_key(green, name="green-key")

    def client(issued):
        return openai.OpenAI(base_url=f"{make_run}/api/v1", api_key=issued.plaintext, max_retries=0)

    # A call, then the dashboard: chart bar and top keys within 10 s, without any beat of ours.
    context, page = new_page(chromium, make_run)
    log_in(page, f"owner-{tag}")
    reply = client(blue_key).chat.completions.create(
        model="anthropic/claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "Hello"}])
    called = time.monotonic()

    def dashboard_shows_it():
        page.goto("/")
        bar = page.locator("svg.chart rect[data-model='claude-haiku-4-5']")
        return bar.count() == 1 and "blue-key" in page.locator("#top-keys").inner_text()

    wait_until(dashboard_shows_it, timeout=10, interval=0.5)
    assert time.monotonic() - called < 10
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "make_run_dashboard.png"), full_page=True)

    # Its exact sub-cent cost, never "$0.00": dashboard, keys page, report.
    charge = wait_until(lambda: Charge.objects.filter(request__generation_id=reply.id).first(), timeout=10)
    assert Decimal(0) < charge.amount < Decimal("0.01")
    shown = usd_text(charge.amount)
    assert shown != "$0.00"
    page.goto("/")
    assert page.locator("#stat-spend .value").inner_text() == shown
    assert page.locator("#stat-spend .usd").first.get_attribute("title").startswith(format(charge.amount.normalize(), "f"))
    for path in ["/", "/keys/", "/reports/"]:
        page.goto(path)
        assert shown in page.locator("main").inner_text(), path
        assert not re.search(r"\$0\.00(?!\d)", page.locator("main").inner_text()), path
    context.close()

    # The operator: both teams, suspend green, its key gets 403 within 2 s, resume.
    assert client(green_key).chat.completions.create(
        model="anthropic/claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).id
    context, page = new_page(chromium, make_run)
    log_in(page, f"operator-{tag}")
    assert page.url.endswith("/operator/")
    teams = page.locator("#teams").inner_text()
    assert blue.name in teams and green.name in teams
    page.on("dialog", lambda dialog: dialog.accept())
    row = page.locator(f"#teams tr[data-team='{green.name}']")
    row.locator("button", has_text="Suspend").click()
    page.wait_for_load_state()
    suspended_at = time.monotonic()
    assert "suspended" in page.locator(f"#teams tr[data-team='{green.name}']").inner_text()

    def refused() -> bool:
        try:
            client(green_key).models.list()
        except openai.PermissionDeniedError as exc:
            return exc.code == "team_suspended"
        return False

    wait_until(refused, timeout=5, interval=0.1)
    assert time.monotonic() - suspended_at < 2.0
    page.screenshot(path=str(ARTIFACTS / "operator_console.png"), full_page=True)
    page.locator(f"#teams tr[data-team='{green.name}']").locator("button", has_text="Resume").click()
    page.wait_for_load_state()
    wait_until(lambda: not refused(), timeout=5, interval=0.1)
    assert client(green_key).chat.completions.create(
        model="anthropic/claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "back"}]).id
    actions = list(AuditEntry.objects.filter(team=green, source="portal").values_list("action", "actor_label"))
    assert ("team.suspend", f"operator-{tag}") in actions and ("team.resume", f"operator-{tag}") in actions
    context.close()
