import logging

from celery import shared_task

from .alerts import Priced, deliver, deliver_due, evaluate, retry_delay
from .models import BudgetAlert
from .months import last_closed_month, parse_month
from .reports import generate_statements
from .rollups import roll_up
from .services import price_pending

log = logging.getLogger(__name__)


@shared_task
def price_finished_requests(batch: int = 500, max_batches: int = 200) -> int:
    """Prices every finished request not yet priced (beat: every PRICING_INTERVAL_SECONDS),
    then checks the budget alerts of the teams it touched. The gateway only commits
    records; it never waits on the broker, so a broker outage delays charges but cannot
    lose one."""
    priced = Priced()
    done = 0
    for _ in range(max_batches):
        count = price_pending(batch, seen=priced)
        done += count
        if count < batch:
            break
    if priced.teams:
        try:
            evaluate(priced)
        except Exception:  # alerts must never hold up pricing; the next run sees the same spend
            log.exception("budget alert evaluation failed")
    return done


@shared_task(bind=True, max_retries=None)
def deliver_budget_alert(self, alert_id: int) -> bool | None:
    """E-mails and POSTs one budget alert; retried with exponential backoff until it lands
    or billing.alerts.MAX_ATTEMPTS is reached (the row records each attempt)."""
    done = deliver(alert_id)
    if done is False and not self.request.is_eager:  # eager (no broker): the periodic sweep retries
        attempts = BudgetAlert.objects.filter(pk=alert_id).values_list("attempts", flat=True).first() or 1
        raise self.retry(countdown=retry_delay(attempts))
    return done


@shared_task
def deliver_due_alerts() -> int:
    """Delivers alerts a lost task or a broker outage left behind (beat: every 30 s)."""
    return deliver_due()


@shared_task
def roll_up_usage() -> int:
    """Folds new charges into the hourly roll-ups (beat: every minute)."""
    return roll_up()


@shared_task
def generate_monthly_statements(month: str | None = None) -> int:
    """Stores last month's statements (beat: on the 1st and 2nd, so a billing time zone
    behind UTC is covered too); teams that already have one are skipped."""
    roll_up()
    target = parse_month(month) if month else last_closed_month()
    return len(generate_statements(target, only_missing=month is None))


@shared_task
def delete_expired_responses() -> int:
    """Deletes stored Responses API answers past RESPONSES_RETENTION_DAYS (beat: hourly)."""
    from .stored_responses import delete_expired

    return delete_expired()
