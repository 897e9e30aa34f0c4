"""Budget alerts: one e-mail to the owners/admins and one signed webhook POST per threshold
per period, for the team budget, the prepaid credit and each key's limit; the 100% alert
also at the period's first refused request; never twice (a unique row claims each
crossing, under concurrent evaluations and on two gateway processes); retried with
backoff; webhook URLs that point inside the network are refused."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.utils import timezone

from billing.alerts import Priced, deliver, evaluate
from billing.models import BudgetAlert, CreditEntry, RequestRecord
from billing.services import add_credit
from billing.tasks import price_finished_requests
from tokenhub_portal.accounts.models import AuditEntry, Membership, Team
from tokenhub_portal.accounts.services import clean_thresholds, update_team_alerts
from tokenhub_portal.accounts.webhooks import SIGNATURE_HEADER, WebhookURLError, check_webhook_url, verify

from .conftest import ROOT, run_concurrently, wait_until

# 100,000 input tokens of Sonnet ($3/M) = $0.30
TOKENS_30C = 100_000


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records every POST; `statuses` are answered in
    turn (then 200)."""

    def __init__(self):
        self.posts: list[dict] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append({"body": body, "headers": dict(self.headers)})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tokenhub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_team(self, name: str) -> list[dict]:
        return [p for p in self.posts if json.loads(p["body"])["team"]["name"] == name]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _local_receivers(settings):
    """The receivers run on 127.0.0.1 (the SSRF tests turn this off again)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def eager(monkeypatch):
    """Celery tasks run in this process (deliveries included), whatever the broker."""
    from tokenhub_portal.celery import app

    monkeypatch.setattr(app.conf, "task_always_eager", True)
    monkeypatch.setattr(app.conf, "task_eager_propagates", True)


@pytest.fixture
def team(db, seeded, receiver):
    User = get_user_model()
    t = Team.objects.create(name="acme", monthly_budget=Decimal("1.00"))
    for name, role in [("olive", "owner"), ("adam", "admin"), ("mia", "member")]:
        Membership.objects.create(team=t, role=role,
                                  user=User.objects.create_user(name, f"{name}@example.com", "pw-alerts-1"))
    t.secret = update_team_alerts(t, webhook_url=receiver.url)
    return t


def spend(make_record, key, cents30: int = 1, **extra):
    for _ in range(cents30):
        make_record(key, input_tokens=TOKENS_30C, **extra)


def run_pricing(capture):
    with capture(execute=True):
        price_finished_requests()


def posted(receiver, team) -> list[dict]:
    return [json.loads(p["body"]) for p in receiver.for_team(team.name)]


def test_each_threshold_fires_once_with_one_email_and_one_signed_post(team, make_key, make_record, receiver, eager,
                                                                     django_capture_on_commit_callbacks):
    key = make_key(team.name, name="prod")
    spend(make_record, key, 2)                      # $0.60: below 80%
    run_pricing(django_capture_on_commit_callbacks)
    assert not BudgetAlert.objects.exists() and not mail.outbox and not receiver.posts

    spend(make_record, key, 1)                      # $0.90: 80% reached
    run_pricing(django_capture_on_commit_callbacks)
    run_pricing(django_capture_on_commit_callbacks)  # again: nothing new
    assert [(a.scope, a.threshold) for a in BudgetAlert.objects.all()] == [("team_budget", 80)]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["adam@example.com", "olive@example.com"]  # owners and admins, not members
    assert "80% of the team's monthly budget" in message.subject and "acme" in message.subject
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert verify(post["body"], team.secret, post["headers"][SIGNATURE_HEADER])
    assert post["headers"][SIGNATURE_HEADER].startswith("sha256=")
    body = json.loads(post["body"])
    assert (body["type"], body["scope"], body["threshold"], body["trigger"]) == (
        "budget.threshold_reached", "team_budget", 80, "spend")
    assert body["limit"] == "1" and body["spent"] == "0.9" and body["remaining"] == "0.1"
    assert body["period"] == f"{timezone.now():%Y-%m}" and body["team"] == {"id": team.pk, "name": "acme"}
    assert post["headers"]["X-TokenHub-Delivery"] == body["id"]

    spend(make_record, key, 1)                      # $1.20 (no gateway here to refuse it): 100%
    run_pricing(django_capture_on_commit_callbacks)
    assert sorted(a.threshold for a in BudgetAlert.objects.all()) == [80, 100]
    assert len(mail.outbox) == 2 and len(receiver.posts) == 2
    assert all(a.email_sent_at and a.webhook_sent_at and a.next_attempt_at is None for a in BudgetAlert.objects.all())


def test_the_first_refused_request_fires_the_100_percent_alert(team, make_key, make_record, receiver, eager,
                                                               django_capture_on_commit_callbacks):
    key = make_key(team.name)
    spend(make_record, key, 3)                      # $0.90
    run_pricing(django_capture_on_commit_callbacks)
    refused = dict(status="error", http_status=402, error_type="team_budget_exceeded", input_tokens=0)
    make_record(key, **refused)
    run_pricing(django_capture_on_commit_callbacks)
    make_record(key, **refused)                     # the second refusal is not news
    run_pricing(django_capture_on_commit_callbacks)
    alert = BudgetAlert.objects.get(threshold=100)
    assert alert.trigger == "refused" and alert.spent == Decimal("0.9")
    assert [b["threshold"] for b in posted(receiver, team)] == [80, 100]
    assert "a request was refused" in mail.outbox[-1].subject and len(mail.outbox) == 2


def test_key_limit_alerts_name_the_key(team, make_key, make_record, receiver, eager,
                                       django_capture_on_commit_callbacks):
    team.monthly_budget = None
    team.save()
    key = make_key(team.name, name="batch-job", monthly_limit=Decimal("0.50"))
    make_key(team.name, name="quiet", monthly_limit=Decimal("5"))
    spend(make_record, key, 2)                      # $0.60 of $0.50
    run_pricing(django_capture_on_commit_callbacks)
    alerts = BudgetAlert.objects.order_by("threshold")
    assert [(a.scope, a.owner_id, a.threshold) for a in alerts] == [
        ("key_limit", key.api_key.pk, 80), ("key_limit", key.api_key.pk, 100)]
    body = posted(receiver, team)[0]
    assert body["key"] == {"id": key.api_key.pk, "name": "batch-job", "label": key.api_key.prefix}
    assert "batch-job" in mail.outbox[0].subject


def test_prepaid_credit_alerts_start_over_after_a_top_up(team, make_key, make_record, receiver, eager,
                                                         django_capture_on_commit_callbacks):
    team.monthly_budget, team.prepaid = None, True
    team.save()
    add_credit(team, Decimal("1.00"))
    key = make_key(team.name)
    spend(make_record, key, 3)                      # $0.90 of $1 credit
    run_pricing(django_capture_on_commit_callbacks)
    first = BudgetAlert.objects.get()
    assert (first.scope, first.threshold, first.period) == ("credit", 80, f"credit-{CreditEntry.objects.get().pk}")
    add_credit(team, Decimal("1.00"))               # a new period: $0.90 of $2
    spend(make_record, key, 3)                      # $1.80 of $2: 80% again
    run_pricing(django_capture_on_commit_callbacks)
    assert BudgetAlert.objects.filter(scope="credit", threshold=80).count() == 2
    assert len(posted(receiver, team)) == 2


def test_thresholds_are_per_team(team, make_key, make_record, receiver, eager, django_capture_on_commit_callbacks):
    team.alert_thresholds = [50]
    team.save()
    key = make_key(team.name)
    spend(make_record, key, 4)
    run_pricing(django_capture_on_commit_callbacks)
    assert [a.threshold for a in BudgetAlert.objects.all()] == [50]
    team.alert_thresholds = []
    team.save()
    BudgetAlert.objects.all().delete()
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)
    assert not BudgetAlert.objects.exists()


def test_failed_webhook_is_retried_with_backoff_and_never_sent_twice(team, make_key, make_record, receiver,
                                                                     django_capture_on_commit_callbacks):
    key = make_key(team.name)
    spend(make_record, key, 3)
    receiver.statuses = [500]
    with django_capture_on_commit_callbacks(execute=False):  # the task is not queued: deliver by hand
        price_finished_requests()
    alert = BudgetAlert.objects.get()
    assert deliver(alert.pk) is False
    alert.refresh_from_db()
    assert alert.attempts == 1 and alert.email_sent_at and not alert.webhook_sent_at
    assert alert.next_attempt_at > timezone.now() + timedelta(seconds=20) and "500" in alert.last_error
    assert deliver(alert.pk) is True  # the retry (the task's countdown, or the sweep once due)
    alert.refresh_from_db()
    assert alert.webhook_sent_at and alert.next_attempt_at is None
    assert deliver(alert.pk) is None  # done: nothing left to send
    assert len(mail.outbox) == 1 and len(receiver.posts) == 2
    assert receiver.posts[0]["body"] == receiver.posts[1]["body"]  # the same delivery, byte for byte


def test_a_held_lease_keeps_a_second_worker_out(team, make_key, make_record, receiver,
                                                django_capture_on_commit_callbacks):
    key = make_key(team.name)
    spend(make_record, key, 3)
    with django_capture_on_commit_callbacks(execute=False):
        price_finished_requests()
    alert = BudgetAlert.objects.get()
    BudgetAlert.objects.filter(pk=alert.pk).update(lease_until=timezone.now() + timedelta(minutes=1))
    assert deliver(alert.pk) is None and not receiver.posts and not mail.outbox


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_claim_each_crossing_once(seeded, make_key, make_record, receiver, eager):
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers itself; the threads would share one test transaction")
    owner = get_user_model().objects.create_user("conc", "conc@example.com", "pw-alerts-2")
    team = Team.objects.create(name=f"race-{uuid.uuid4().hex[:6]}", monthly_budget=Decimal("1.00"))
    Membership.objects.create(team=team, user=owner, role="owner")
    update_team_alerts(team, webhook_url=receiver.url)
    key = make_key(team.name)
    spend(make_record, key, 4)                      # $1.20: both thresholds at once
    price_finished_requests()
    BudgetAlert.objects.all().delete()
    mail.outbox.clear()
    receiver.posts.clear()
    run_concurrently(lambda: evaluate(Priced(teams={team.pk})), threads=6)
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [80, 100]
    wait_until(lambda: len(receiver.posts) >= 2)
    assert sorted(b["threshold"] for b in posted(receiver, team)) == [80, 100]
    assert len(mail.outbox) == 2


# --- webhook URLs: SSRF ---------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.1.2.3/", "http://192.168.0.10/",
    "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "ftp://example.com/", "not a url",
    "https:///nohost",
])
def test_private_and_odd_webhook_urls_are_refused(settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(WebhookURLError):
        check_webhook_url(url)


def test_public_addresses_are_allowed_and_the_operator_can_allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert check_webhook_url(" https://8.8.8.8/hooks ") == "https://8.8.8.8/hooks"
    settings.WEBHOOK_ALLOW_PRIVATE = True
    assert check_webhook_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"


def test_delivery_checks_the_url_again(team, make_key, make_record, receiver, settings,
                                       django_capture_on_commit_callbacks):
    key = make_key(team.name)
    spend(make_record, key, 3)
    with django_capture_on_commit_callbacks(execute=False):
        price_finished_requests()
    settings.WEBHOOK_ALLOW_PRIVATE = False          # e.g. DNS now points inside
    alert = BudgetAlert.objects.get()
    assert deliver(alert.pk) is True                # given up, not retried
    alert.refresh_from_db()
    assert "refused" in alert.last_error and alert.next_attempt_at is None and not receiver.posts
    assert alert.email_sent_at is not None


# --- settings in the portal -------------------------------------------------------------------

def owner_client(team) -> Client:
    client = Client()
    client.force_login(Membership.objects.get(team=team, role="owner").user)
    return client


def test_owner_sets_thresholds_and_webhook_and_sees_the_secret_once(team, receiver, settings):
    client = owner_client(team)
    response = client.post("/team/alerts/", {"thresholds": "50, 90,100", "webhook_url": receiver.url + "?v=2"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    team.refresh_from_db()
    assert team.alert_thresholds == [50, 90, 100] and team.webhook_url.endswith("?v=2")
    assert team.webhook_secret.startswith("whsec_") and team.webhook_secret in response.content.decode()
    assert team.webhook_secret not in client.get("/team/").content.decode()
    entry = AuditEntry.objects.filter(team=team, action="team.alerts").latest("created")
    assert entry.after["webhook_secret"] == "(new secret)" and team.webhook_secret not in json.dumps(entry.after)
    # Same URL again: no new secret, a plain redirect.
    assert client.post("/team/alerts/", {"thresholds": "80", "webhook_url": team.webhook_url}).status_code == 302
    old = team.webhook_secret
    team.refresh_from_db()
    assert team.webhook_secret == old and team.alert_thresholds == [80]
    rotated = client.post("/team/webhook/rotate/")
    team.refresh_from_db()
    assert team.webhook_secret != old and team.webhook_secret in rotated.content.decode()


def test_portal_refuses_private_webhooks_and_bad_thresholds(team, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    client = owner_client(team)
    before = (team.webhook_url, team.webhook_secret)
    response = client.post("/team/alerts/", {"thresholds": "80", "webhook_url": "http://169.254.169.254/latest"})
    assert response.status_code == 400 and "private" in response.content.decode()
    response = client.post("/team/alerts/", {"thresholds": "80, 250", "webhook_url": ""})
    assert response.status_code == 400
    team.refresh_from_db()
    assert (team.webhook_url, team.webhook_secret) == before and team.alert_thresholds == [80, 100]


def test_members_cannot_change_alert_settings(team):
    client = Client()
    client.force_login(Membership.objects.get(team=team, role="member").user)
    assert client.post("/team/alerts/", {"thresholds": "10", "webhook_url": ""}).status_code == 403
    assert client.post("/team/webhook/rotate/").status_code == 403
    assert "alerts-form" not in client.get("/team/").content.decode()


@pytest.mark.parametrize(("given", "error"), [
    (["0"], True), (["101"], True), (["80.5"], True), (["abc"], True), ([True], True), ("80", True),
    ([str(i) for i in range(1, 12)], True), (["80", "80%", " 100 "], False), ([], False),
])
def test_threshold_validation(given, error):
    if error:
        with pytest.raises(ValueError):
            clean_thresholds(given)
    else:
        assert clean_thresholds(given) in ([80, 100], [])


# --- end to end: concurrent calls on two gateway processes -------------------------------------

def mails_for(team_name: str) -> list[str]:
    folder = Path(ROOT / "var" / "test-mail")
    if not folder.exists():
        return []
    found = []
    for path in folder.iterdir():
        text = path.read_text(errors="replace")
        found += [m for m in text.split("\n" + "-" * 79 + "\n") if f"Subject: [TokenHub] {team_name}:" in m]
    return found


@pytest.mark.django_db(transaction=True)
def test_alerts_under_concurrent_calls_on_two_gateways(seeded, gateway_pair, pricing_worker, receiver, make_key):
    """Spend crosses 80% and then the budget refuses calls, while eight threads call two
    gateway processes: the receiver gets exactly one signed POST per threshold, and the
    owners one e-mail per threshold."""
    import openai

    name = f"alerts-{uuid.uuid4().hex[:8]}"
    team = Team.objects.create(name=name, monthly_budget=Decimal("0.01"))  # budgets are whole cents
    owner = get_user_model().objects.create_user(f"own-{name}", f"{name}@example.com", "pw-alerts-3")
    Membership.objects.create(team=team, user=owner, role="owner")
    secret = update_team_alerts(team, webhook_url=receiver.url)
    issued = make_key(name, name="burst")
    clients = [openai.OpenAI(base_url=f"{url}/api/v1", api_key=issued.plaintext, max_retries=0) for url in gateway_pair]
    refused = []

    def call_until_refused():
        index = threading.get_ident()
        for i in range(200):
            try:
                clients[(index + i) % 2].chat.completions.create(
                    model="anthropic/claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
            except openai.APIStatusError as exc:
                assert exc.status_code == 402, exc
                refused.append(exc)
                return

    run_concurrently(call_until_refused, threads=8)
    assert len(refused) == 8
    wait_until(lambda: len(receiver.for_team(name)) >= 2, timeout=60)
    # More refusals, fully priced and evaluated: still nothing new.
    for client in clients:
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="anthropic/claude-sonnet-4-6", max_tokens=16,
                                           messages=[{"role": "user", "content": "again"}])
    wait_until(lambda: not RequestRecord.objects.filter(team=team, priced_at__isnull=True).exists(), timeout=30)
    wait_until(lambda: not BudgetAlert.objects.filter(team=team, next_attempt_at__isnull=False).exists(), timeout=30)
    wait_until(lambda: len(mails_for(name)) >= 2, timeout=30)
    posts = receiver.for_team(name)
    assert sorted(json.loads(p["body"])["threshold"] for p in posts) == [80, 100]
    assert all(verify(p["body"], secret, p["headers"][SIGNATURE_HEADER]) for p in posts)
    assert sorted(BudgetAlert.objects.filter(team=team).values_list("threshold", flat=True)) == [80, 100]
    assert len(mails_for(name)) == 2


def test_runs_below_a_threshold_do_not_read_the_ledger_again(team, make_key, make_record, receiver, eager,
                                                             django_capture_on_commit_callbacks, monkeypatch):
    """Pricing runs every few seconds: the running total (the last exact figure plus what
    each run charged) decides; the ledger is read at the first run and at a crossing."""
    from billing import alerts

    key = make_key(team.name)
    reads = []
    exact = alerts.usage_total
    monkeypatch.setattr(alerts, "usage_total", lambda **kw: reads.append(kw) or exact(**kw))
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)       # $0.30: first sight, one exact read
    assert len(reads) == 1
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)       # $0.60: the running total says no
    assert len(reads) == 1 and not BudgetAlert.objects.exists()
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)       # $0.90: crossed, confirmed on the ledger
    assert len(reads) == 2
    assert BudgetAlert.objects.get().spent == Decimal("0.9")


def test_a_running_total_that_runs_high_never_fires_an_alert(team, make_key, make_record, receiver, eager,
                                                             django_capture_on_commit_callbacks):
    from django.core.cache import cache

    from billing import alerts

    key = make_key(team.name)
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)
    limit = next(x for x in alerts._limits(team, timezone.now()) if x.scope == "team_budget")
    cache.set(alerts._total_key(limit), alerts.to_units(Decimal("5")), 60)  # e.g. a run counted twice
    spend(make_record, key, 1)
    run_pricing(django_capture_on_commit_callbacks)
    assert not BudgetAlert.objects.exists() and not receiver.posts


def test_a_daily_key_limit_alerts_in_its_own_window(team, make_key, make_record, receiver, eager,
                                                   django_capture_on_commit_callbacks):
    from billing.months import limit_window

    team.monthly_budget = None
    team.save()
    key = make_key(team.name, name="nightly", monthly_limit=Decimal("0.50"), limit_reset="daily")
    spend(make_record, key, 2)                      # $0.60 today, of $0.50 a day
    make_record(key, status="error", http_status=402, error_type="key_daily_limit_exceeded", input_tokens=0)
    run_pricing(django_capture_on_commit_callbacks)
    today = limit_window("daily", timezone.now())
    assert sorted((a.period, a.threshold) for a in BudgetAlert.objects.all()) == [(today, 80), (today, 100)]
    assert "the daily limit of key nightly" in mail.outbox[0].subject
