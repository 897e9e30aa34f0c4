from celery import shared_task
from django.conf import settings

from .services import charge_request, unpriced_request_ids


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=10)
def price_requests(record_ids: list[int]) -> int:
    for record_id in record_ids:
        charge_request(record_id)
    return len(record_ids)


@shared_task
def sweep_unpriced(batch: int = 1000, max_batches: int = 100) -> int:
    """Prices finished requests whose task was lost (broker down, worker crash)."""
    done = 0
    for _ in range(max_batches):
        ids = unpriced_request_ids(settings.SWEEP_GRACE_SECONDS, limit=batch)
        for record_id in ids:
            charge_request(record_id)
        done += len(ids)
        if len(ids) < batch:
            break
    return done
