"""Keep every gateway process's caches and limit counters in step with edits made
anywhere (admin, portal, management commands)."""
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from billing.models import CreditEntry, Model, Price
from tokenhub_portal.accounts.models import ApiKey, Team

from . import changes, limits
from .auth import ALL_KEYS
from .runtime import current


def broadcast_key_change(key_hash: str = ALL_KEYS) -> None:
    """Tell every gateway process to drop a key (or, with ALL_KEYS, every key: a team's
    budget changed) from its cache."""
    current().keys.forget(key_hash)
    changes.publish(key_hash)


def broadcast_catalog_change() -> None:
    """Every gateway process reloads the model/price table (a new price takes effect at
    once, so the cost in responses and limits matches the charge)."""
    current().catalog.invalidate()
    changes.publish(changes.CATALOG)


@receiver(post_save, sender=ApiKey)
def key_saved(sender, instance: ApiKey, created: bool, **kwargs) -> None:
    if created:
        return  # nothing cached yet
    key_hash, key_id = instance.key_hash, instance.pk
    current().keys.forget(key_hash)  # this process at once; every process again once the change is committed

    def publish() -> None:
        broadcast_key_change(key_hash)
        limits.ledger_changed("key", key_id)

    transaction.on_commit(publish)


@receiver(post_save, sender=Team)
def team_saved(sender, instance: Team, created: bool, **kwargs) -> None:
    if created:
        return
    team_id = instance.pk

    def publish() -> None:
        broadcast_key_change(ALL_KEYS)  # every key carries its team's budget
        limits.ledger_changed("team", team_id)
        limits.ledger_changed("credit", team_id)

    transaction.on_commit(publish)


@receiver(post_save, sender=CreditEntry)
def credit_added(sender, instance: CreditEntry, **kwargs) -> None:
    team_id = instance.team_id
    transaction.on_commit(lambda: limits.ledger_changed("credit", team_id))


@receiver(post_save, sender=Model)
@receiver(post_save, sender=Price)
def catalog_changed(sender, **kwargs) -> None:
    transaction.on_commit(broadcast_catalog_change)
