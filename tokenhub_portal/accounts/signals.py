"""Saves of keys and teams: write their audit entries and move the gateway change counter."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from . import audit, changes
from .models import ApiKey, Team

# What an entry shows of each model: everything an owner or operator can change; never
# the key hash or the webhook secret (its rotation shows as a flag).
KEY_FIELDS = [f.attname for f in ApiKey._meta.concrete_fields
              if f.name not in ("id", "key_hash", "prefix", "created", "updated", "last_used", "created_by", "team")]
TEAM_FIELDS = [f.attname for f in Team._meta.concrete_fields if f.name not in ("id", "created", "webhook_secret")]
SECRET = "webhook_secret"


def _key_label(key: ApiKey) -> str:
    return f"key {key.prefix}… ({key.name or 'unnamed'})"


def _team_state(team: Team) -> dict:
    return {**audit.snapshot(team, TEAM_FIELDS), SECRET: bool(team.webhook_secret)}


def _before(sender, instance, fields: list[str], update_fields) -> dict | None:
    if instance.pk is None or (update_fields is not None and not set(update_fields) & {*fields, SECRET}):
        return None
    row = sender.objects.filter(pk=instance.pk).first()
    return None if row is None else row


@receiver(pre_save, sender=ApiKey)
def key_before(sender, instance: ApiKey, raw=False, update_fields=None, **kwargs) -> None:
    old = None if raw else _before(sender, instance, KEY_FIELDS, update_fields)
    instance._audit_before = audit.snapshot(old, KEY_FIELDS) if old is not None else None


@receiver(post_save, sender=ApiKey)
def key_saved(sender, instance: ApiKey, created: bool, raw=False, **kwargs) -> None:
    if raw:
        return
    after = audit.snapshot(instance, KEY_FIELDS)
    if created:
        audit.record("key.create", target_type="api_key", target_id=instance.pk, target=_key_label(instance),
                     team=instance.team_id, after=after)
        return
    changes.bump_on_commit()
    before = getattr(instance, "_audit_before", None)
    if before is None:
        return
    old, new = audit.changes(before, after)
    if not new:
        return
    if "revoked_at" in new and new["revoked_at"] and not old.get("revoked_at"):
        action = "key.revoke"
    elif "disabled" in new:
        action = "key.disable" if new["disabled"] else "key.enable"
    else:
        action = "key.update"
    audit.record(action, target_type="api_key", target_id=instance.pk, target=_key_label(instance),
                 team=instance.team_id, before=old, after=new)


@receiver(post_delete, sender=ApiKey)
def key_deleted(sender, instance: ApiKey, **kwargs) -> None:
    changes.bump_on_commit()
    # No team link: the team may be going in the same delete (the entry would point at it).
    audit.record("key.delete", target_type="api_key", target_id=instance.pk,
                 target=f"{_key_label(instance)} of team #{instance.team_id}",
                 before=audit.snapshot(instance, KEY_FIELDS))


@receiver(pre_save, sender=Team)
def team_before(sender, instance: Team, raw=False, update_fields=None, **kwargs) -> None:
    old = None if raw else _before(sender, instance, TEAM_FIELDS, update_fields)
    instance._audit_before = _team_state(old) if old is not None else None
    instance._audit_secret_changed = old is not None and old.webhook_secret != instance.webhook_secret


def _team_action(old: dict, new: dict) -> str:
    if "suspended" in new:
        return "team.suspend" if new["suspended"] else "team.resume"
    if "monthly_budget" in new:
        return "team.budget"
    if {"alert_thresholds", "webhook_url", SECRET} & set(new):
        return "team.alerts"
    return "team.update"


@receiver(post_save, sender=Team)
def team_saved(sender, instance: Team, created: bool, raw=False, **kwargs) -> None:
    if raw:
        return
    after = _team_state(instance)
    if created:
        audit.record("team.create", target_type="team", target_id=instance.pk, target=f"team {instance.name}",
                     team=instance, after=after)
        return
    changes.bump_on_commit()
    before = getattr(instance, "_audit_before", None)
    if before is None:
        return
    old, new = audit.changes(before, after)
    if getattr(instance, "_audit_secret_changed", False):
        old[SECRET], new[SECRET] = "(previous secret)" if before[SECRET] else None, "(new secret)"
    if new:
        audit.record(_team_action(old, new), target_type="team", target_id=instance.pk,
                     target=f"team {instance.name}", team=instance, before=old, after=new)


@receiver(post_delete, sender=Team)
def team_deleted(sender, instance: Team, **kwargs) -> None:
    changes.bump_on_commit()
    audit.record("team.delete", target_type="team", target_id=instance.pk, target=f"team {instance.name}",
                 before=_team_state(instance))
