"""Budget alerts: tell a team's owners and admins (one e-mail) and its webhook (one signed
POST) when spend reaches a threshold of the team's monthly budget, its prepaid credit or
a key's monthly limit — once per threshold per period.

Evaluated after pricing (billing.tasks.price_finished_requests), never on a request's
path, on settled spend (charges). Pricing runs every few seconds, so each run keeps a
running total per limit in the cache (the exact figure, plus what each run charged) and
reads the ledger again only when that total says a threshold was crossed — the claim is
always made on the exact figure. A crossing is claimed by inserting its BudgetAlert row:
the unique constraint on (scope, owner, period, threshold) makes a second claim — a
concurrent pricing run, another process — fail, so nobody is told twice. Hard limits
mean spend rarely lands on 100% exactly: the 100% alert also fires at the period's first
request refused for lack of budget (the gateway records those with the refusal's code as
error_type).

Delivery (e-mail, then webhook) is a Celery task, retried with exponential backoff; the
row keeps what was delivered, and a lease keeps two workers from sending the same alert.
A periodic sweep retries what a lost task left behind.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from tokenhub_portal.accounts.models import DEFAULT_ALERT_THRESHOLDS, ApiKey, Membership, Team
from tokenhub_portal.accounts.services import clean_thresholds
from tokenhub_portal.accounts.webhooks import SIGNATURE_HEADER, WebhookURLError, check_webhook_url, signature

from .models import BudgetAlert, CreditEntry, RequestRecord
from .months import PERIODS, billing_month, limit_window, window_bounds
from .pricing import format_usd, from_units, to_units
from .rollups import summed_total
from .selectors import usage_by, usage_total

log = logging.getLogger(__name__)

Scope = BudgetAlert.Scope
# The gateway's 402 codes (proxy.limits.Counter.error_code) and the limit each one means.
REFUSAL_SCOPES = {"team_budget_exceeded": Scope.TEAM_BUDGET, "credit_balance_exhausted": Scope.CREDIT,
                  **{f"key_{period}_limit_exceeded": Scope.KEY_LIMIT for period in PERIODS}}
MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)
WEBHOOK_TIMEOUT = 10.0
EVENT = "budget.threshold_reached"


def running_total_seconds() -> int:
    """How long a running total is trusted before the ledger is read again. Without Redis
    the cache is per process, and the gateway and `make run`'s beat both price: less."""
    return 300 if settings.REDIS_URL else 30


@dataclass
class Priced:
    """What a pricing run touched: the teams whose spend moved, what it charged each team
    and key, and the refusals it saw."""

    teams: set[int] = field(default_factory=set)
    team_amounts: dict[int, Decimal] = field(default_factory=dict)
    key_amounts: dict[int, Decimal] = field(default_factory=dict)
    refusals: list[tuple[int, int, str, datetime]] = field(default_factory=list)  # team, key, code, when

    def add(self, record: RequestRecord, amount: Decimal = Decimal(0)) -> None:
        self.teams.add(record.team_id)
        if amount:
            self.team_amounts[record.team_id] = self.team_amounts.get(record.team_id, Decimal(0)) + amount
            self.key_amounts[record.api_key_id] = self.key_amounts.get(record.api_key_id, Decimal(0)) + amount
        if record.http_status == 402 and record.error_type in REFUSAL_SCOPES:
            self.refusals.append((record.team_id, record.api_key_id, record.error_type, record.created))

    def added(self, limit: Limit) -> Decimal:
        amounts = self.key_amounts if limit.scope == Scope.KEY_LIMIT else self.team_amounts
        return amounts.get(limit.owner_id, Decimal(0))


@dataclass
class Limit:
    scope: str
    owner_id: int
    period: str          # a limit window ("2026-11", "2026-W48", "2026-11-29") or "credit-<entry id>"
    limit: Decimal
    api_key: ApiKey | None = None
    spent: Decimal | None = None
    born: float = 0  # the owner's creation time: a recreated database never meets old totals

    @property
    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) of the spend that counts (all of it, for a prepaid balance)."""
        return (None, None) if self.scope == Scope.CREDIT else window_bounds(self.period)

    def window_of(self, when: datetime) -> str:
        """The window a moment falls in, for this limit's period."""
        return limit_window(self.api_key.limit_reset if self.api_key else None, when)


def thresholds_of(team: Team) -> list[int]:
    try:
        return clean_thresholds(team.alert_thresholds or [])
    except ValueError:  # hand-edited in the admin: fall back rather than stay silent
        return list(DEFAULT_ALERT_THRESHOLDS)


def _limits(team: Team, now: datetime) -> list[Limit]:
    month = billing_month(now)
    limits = []
    if team.monthly_budget is not None and team.monthly_budget > 0:
        limits.append(Limit(Scope.TEAM_BUDGET, team.pk, month, team.monthly_budget, born=team.created.timestamp()))
    if team.prepaid:
        credit = summed_total(CreditEntry.objects.filter(team=team), {"last": Max("id")}, "amount", "total")
        if credit["total"] > 0:  # a top-up starts a new period
            limits.append(Limit(Scope.CREDIT, team.pk, f"credit-{credit['last']}", credit["total"],
                                born=team.created.timestamp()))
    keys = ApiKey.objects.filter(team=team, kind=ApiKey.Kind.INFERENCE, monthly_limit__gt=0, revoked_at__isnull=True,
                                 disabled=False)
    for key in keys:  # each in the window of its own period (daily, weekly or monthly)
        limits.append(Limit(Scope.KEY_LIMIT, key.pk, limit_window(key.limit_reset, now), key.monthly_limit,
                            api_key=key, born=key.created.timestamp()))
    return limits


def _settled(team: Team, limits: list[Limit], now: datetime) -> None:
    """Set `spent` to the exact settled spend (one ledger read per kind of limit) and
    restart the running totals from it."""
    settled = {"pending": False, "now": now, "team_id": team.pk}
    for x in limits:
        if x.scope != Scope.KEY_LIMIT:
            start, end = x.bounds
            x.spent = usage_total(start=start, end=end, **settled)["cost"]
    per_window: dict[tuple, dict] = {}  # the team's keys by window: one read per period in use
    for x in limits:
        if x.scope == Scope.KEY_LIMIT:
            if x.bounds not in per_window:
                start, end = x.bounds
                per_window[x.bounds] = usage_by("api_key_id", start=start, end=end, **settled)
            row = per_window[x.bounds].get(x.owner_id)
            x.spent = row["cost"] if row else Decimal(0)
    for x in limits:
        cache.set(_total_key(x), to_units(x.spent), running_total_seconds())


def _total_key(x: Limit) -> str:
    return f"th:alerts:spent:{x.scope}:{x.owner_id}:{x.born:.6f}:{x.period}"


def _running_total(x: Limit, added: Decimal) -> Decimal | None:
    """The last exact figure plus what pricing charged since; None when there is none. It
    can only run high (a run counted twice in a race), never low for long: the cache entry
    expires and the ledger is read again."""
    try:
        units = cache.incr(_total_key(x), to_units(added)) if added else cache.get(_total_key(x))
    except ValueError:  # expired between runs
        return None
    return None if units is None else from_units(units)


def _crosses(x: Limit, thresholds: list[int], claimed: set) -> bool:
    return any((x.scope, x.owner_id, x.period, t) not in claimed and x.spent * 100 >= x.limit * t
               for t in thresholds)


def evaluate(priced: Priced, now: datetime | None = None) -> list[int]:
    """Claim an alert for every threshold the touched teams and keys have reached (and for
    100% where a request was refused). Returns the new alerts' ids; their delivery is
    queued after the commit."""
    now = now or timezone.now()
    created: list[int] = []
    for team in Team.objects.filter(pk__in=priced.teams):
        thresholds = thresholds_of(team)
        if not thresholds:
            continue
        created += _evaluate_team(team, thresholds, priced, now)
    for alert_id in created:
        transaction.on_commit(lambda alert_id=alert_id: _queue(alert_id))
    return created


def _evaluate_team(team: Team, thresholds: list[int], priced: Priced, now: datetime) -> list[int]:
    limits = _limits(team, now)
    if not limits:
        return []
    for x in limits:  # kept current even when nothing is left to tell (thresholds may change)
        x.spent = _running_total(x, priced.added(x))
    claimed = set(BudgetAlert.objects.filter(team=team, period__in={x.period for x in limits})
                  .values_list("scope", "owner_id", "period", "threshold"))
    open_limits = [x for x in limits if any((x.scope, x.owner_id, x.period, t) not in claimed for t in thresholds)]
    if not open_limits:
        return []  # everything this period has been told already
    refusals = _refused(team, open_limits, priced, thresholds)
    check = [x for x in open_limits if x.spent is None or _crosses(x, thresholds, claimed) or id(x) in refusals]
    if not check:
        return []
    _settled(team, check, now)  # the claim is made on the exact figure
    created = []
    for x in check:
        for t in thresholds:
            crossing = (x.scope, x.owner_id, x.period, t)
            if crossing not in claimed and x.spent * 100 >= x.limit * t:
                created += _claim(team, x, t, BudgetAlert.Trigger.SPEND, now)
                claimed.add(crossing)
        crossing = (x.scope, x.owner_id, x.period, 100)
        if id(x) in refusals and crossing not in claimed:  # hard limits: the refusal is the 100% mark
            created += _claim(team, x, 100, BudgetAlert.Trigger.REFUSED, now)
            claimed.add(crossing)
    return created


def _refused(team: Team, limits: list[Limit], priced: Priced, thresholds: list[int]) -> set[int]:
    """The limits (by id()) a request of this run was refused for, in their own period."""
    if 100 not in thresholds:
        return set()
    out = set()
    for team_id, key_id, code, when in priced.refusals:
        if team_id != team.pk:
            continue
        scope = REFUSAL_SCOPES[code]
        owner = key_id if scope == Scope.KEY_LIMIT else team.pk
        for x in limits:
            if (x.scope, x.owner_id) == (scope, owner) and (scope == Scope.CREDIT or x.period == x.window_of(when)):
                out.add(id(x))
    return out


def _claim(team: Team, x: Limit, threshold: int, trigger: str, now: datetime) -> list[int]:
    payload = webhook_payload(team, x, threshold, trigger, now)
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                team=team, api_key=x.api_key, scope=x.scope, owner_id=x.owner_id, period=x.period,
                threshold=threshold, trigger=trigger, limit=x.limit, spent=x.spent, payload=payload,
                next_attempt_at=now,
            )
    except IntegrityError:  # claimed by another run: it delivers
        return []
    return [alert.pk]


def describe(scope: str, api_key: ApiKey | None) -> str:
    if scope == Scope.TEAM_BUDGET:
        return "the team's monthly budget"
    if scope == Scope.CREDIT:
        return "the team's prepaid credit"
    name = api_key.name if api_key else ""
    label = api_key.prefix if api_key else ""
    period = (api_key.limit_reset if api_key else None) or "monthly"
    return f"the {period} limit of key {name or label}"


def webhook_payload(team: Team, x: Limit, threshold: int, trigger: str, now: datetime) -> dict:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "type": EVENT,
        "created_at": now.isoformat(),
        "team": {"id": team.pk, "name": team.name},
        "scope": x.scope,
        "key": ({"id": x.api_key.pk, "name": x.api_key.name, "label": x.api_key.prefix} if x.api_key else None),
        "period": x.period,
        "threshold": threshold,
        "trigger": trigger,
        "limit": format_usd(x.limit),
        "spent": format_usd(x.spent),
        "remaining": format_usd(max(x.limit - x.spent, Decimal(0))),
        "description": describe(x.scope, x.api_key),
    }


def _queue(alert_id: int) -> None:
    from .tasks import deliver_budget_alert  # the tasks module imports this one

    try:
        deliver_budget_alert.delay(alert_id)
    except Exception:  # broker down: the sweep (deliver_due_alerts) delivers it later
        log.warning("could not queue budget alert %s; the sweep will deliver it", alert_id, exc_info=True)


# --- delivery ----------------------------------------------------------------------------

def body_bytes(payload: dict) -> bytes:
    """The exact bytes that are signed and sent (stable across retries)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def retry_delay(attempts: int) -> int:
    """30 s, 1 min, 2 min … capped at an hour."""
    return min(30 * 2 ** max(attempts - 1, 0), 3600)


def recipients(team: Team) -> list[str]:
    emails = (Membership.objects.filter(team=team, role__in=[Membership.Role.OWNER, Membership.Role.ADMIN])
              .exclude(user__email="").values_list("user__email", flat=True))
    return sorted(set(emails))


def _send_email(alert: BudgetAlert) -> None:
    p = alert.payload
    what = p["description"]
    if alert.trigger == BudgetAlert.Trigger.REFUSED:
        subject = f"[TokenHub] {alert.team.name}: a request was refused, {what} is used up"
    else:
        subject = f"[TokenHub] {alert.team.name}: {alert.threshold}% of {what} reached"
    lines = [
        f"Team: {alert.team.name}",
        f"Limit: {what}, ${p['limit']} ({'period ' + p['period'] if alert.scope != Scope.CREDIT else 'since the last top-up'})",
        f"Spent: ${p['spent']} ({alert.threshold}% threshold)",
        f"Remaining: ${p['remaining']}",
    ]
    if alert.trigger == BudgetAlert.Trigger.REFUSED:
        lines.append("A request was refused because it could not fit in what is left. Raise the limit or top up.")
    lines.append("\nYou get one message per threshold per period. Thresholds are set on the team page of the portal.")
    send_mail(subject, "\n".join(lines), from_email=None, recipient_list=recipients(alert.team))


def _post_webhook(alert: BudgetAlert) -> None:
    url = check_webhook_url(alert.team.webhook_url)  # again: DNS may have changed since it was set
    body = body_bytes(alert.payload)
    headers = {"Content-Type": "application/json", "User-Agent": "TokenHub-Webhooks/1",
               SIGNATURE_HEADER: signature(body, alert.team.webhook_secret),
               "X-TokenHub-Event": EVENT, "X-TokenHub-Delivery": alert.payload["id"]}
    with httpx.Client(timeout=WEBHOOK_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        response = client.post(url, content=body, headers=headers)
    if not 200 <= response.status_code < 300:
        raise httpx.HTTPStatusError(f"webhook answered {response.status_code}", request=response.request,
                                    response=response)


def deliver(alert_id: int, now: datetime | None = None) -> bool | None:
    """Send what is still unsent of one alert. True: all done (or given up); False: retry
    later (next_attempt_at says when); None: not ours (another worker holds it, or done)."""
    now = now or timezone.now()
    leased = (BudgetAlert.objects.filter(pk=alert_id, next_attempt_at__isnull=False)
              .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(lease_until=now + LEASE))
    if not leased:
        return None
    alert = BudgetAlert.objects.select_related("team").get(pk=alert_id)
    updates: dict = {"lease_until": None}
    error = ""
    if alert.email_sent_at is None:
        try:
            _send_email(alert)
            updates["email_sent_at"] = alert.email_sent_at = timezone.now()
        except Exception as exc:
            log.warning("budget alert %s: e-mail failed", alert_id, exc_info=True)
            error = f"e-mail: {exc}"
    webhook_done = alert.webhook_sent_at is not None or not alert.team.webhook_url
    give_up = False
    if not webhook_done:
        try:
            _post_webhook(alert)
            updates["webhook_sent_at"] = timezone.now()
            webhook_done = True
        except WebhookURLError as exc:
            error, give_up = f"webhook refused: {exc}", True
        except Exception as exc:
            log.warning("budget alert %s: webhook to %s failed: %s", alert_id, alert.team.webhook_url, exc)
            error = f"webhook: {exc}"
    done = alert.email_sent_at is not None and webhook_done
    if not done:
        updates["attempts"] = alert.attempts + 1
        updates["last_error"] = error[:300]
        give_up = give_up or updates["attempts"] >= MAX_ATTEMPTS
    updates["next_attempt_at"] = None if done or give_up else timezone.now() + timedelta(
        seconds=retry_delay(alert.attempts + 1))
    BudgetAlert.objects.filter(pk=alert_id).update(**updates)
    if give_up and not done:
        log.error("budget alert %s: giving up after %s attempts (%s)", alert_id, updates["attempts"], error)
    return done or give_up


def deliver_due(now: datetime | None = None, limit: int = 100) -> int:
    """Deliver alerts whose next attempt is due (a lost task, a broker outage, eager mode)."""
    now = now or timezone.now()
    due = list(BudgetAlert.objects.filter(next_attempt_at__lte=now).order_by("next_attempt_at")
               .values_list("pk", flat=True)[:limit])
    return sum(1 for alert_id in due if deliver(alert_id, now))
