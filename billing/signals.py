"""Saves of credits and of the model/price table: write their audit entries and move the
gateway change counter (a top-up or a new price must count in every process at once)."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from tokenhub_portal.accounts import audit, changes

from .models import CreditEntry, Model, Price

PRICE_FIELDS = ["model_id", "effective_from", "input_per_mtok", "output_per_mtok", "cache_write_5m_multiplier",
                "cache_write_1h_multiplier", "cache_read_multiplier"]
MODEL_FIELDS = [f.attname for f in Model._meta.concrete_fields if f.name not in ("id", "created")]


@receiver(post_save, sender=CreditEntry)
def credit_added(sender, instance: CreditEntry, created: bool, raw=False, **kwargs) -> None:
    if raw:
        return
    changes.bump_on_commit()
    if created:
        audit.record("credit.add", target_type="credit", target_id=instance.pk,
                     target=f"{instance.amount.normalize():f} USD ({instance.get_kind_display().lower()})",
                     team=instance.team_id, after=audit.snapshot(instance, ["amount", "kind", "note"]))


@receiver(pre_save, sender=Price)
@receiver(pre_save, sender=Model)
def catalog_before(sender, instance, raw=False, **kwargs) -> None:
    fields = PRICE_FIELDS if sender is Price else MODEL_FIELDS
    old = sender.objects.filter(pk=instance.pk).first() if instance.pk and not raw else None
    instance._audit_before = audit.snapshot(old, fields) if old is not None else None


def _price_label(price: Price) -> str:
    return f"price of {price.model.public_id} from {price.effective_from:%Y-%m-%d %H:%M}"


@receiver(post_save, sender=Price)
@receiver(post_save, sender=Model)
def catalog_saved(sender, instance, created: bool, raw=False, **kwargs) -> None:
    if raw:
        return
    changes.bump_on_commit()
    kind = "price" if sender is Price else "model"
    fields = PRICE_FIELDS if sender is Price else MODEL_FIELDS
    label = _price_label(instance) if sender is Price else f"model {instance.public_id}"
    after = audit.snapshot(instance, fields)
    if created:
        audit.record(f"{kind}.create", target_type=kind, target_id=instance.pk, target=label, after=after)
        return
    before = getattr(instance, "_audit_before", None)
    if before is None:
        return
    old, new = audit.changes(before, after)
    if new:
        audit.record(f"{kind}.update", target_type=kind, target_id=instance.pk, target=label, before=old, after=new)


@receiver(post_delete, sender=Price)
@receiver(post_delete, sender=Model)
def catalog_deleted(sender, instance, **kwargs) -> None:
    changes.bump_on_commit()
    kind = "price" if sender is Price else "model"
    audit.record(f"{kind}.delete", target_type=kind, target_id=instance.pk,
                 before=audit.snapshot(instance, PRICE_FIELDS if sender is Price else MODEL_FIELDS))
