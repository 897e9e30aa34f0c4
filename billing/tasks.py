from celery import shared_task

from .months import last_closed_month, parse_month
from .reports import generate_statements
from .rollups import roll_up
from .services import price_pending


@shared_task
def price_finished_requests(batch: int = 500, max_batches: int = 200) -> int:
    """Prices every finished request not yet priced (beat: every PRICING_INTERVAL_SECONDS).
    The gateway only commits records; it never waits on the broker, so a broker outage
    delays charges but cannot lose one."""
    done = 0
    for _ in range(max_batches):
        priced = price_pending(batch)
        done += priced
        if priced < batch:
            break
    return done


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
