"""The change counter gateway processes poll when there is no Redis to push changes.

Every committed save of something a gateway process caches (a key, a team, a credit,
the model/price table) bumps one row after the commit. A gateway process reads that row
once a second — one indexed single-row query, not a query per request — and drops its
caches when the number moved, so a revocation, an expiry, a suspension or a limit edit
made by any process reaches it within about a second.
"""
from __future__ import annotations

import secrets

from django.db import IntegrityError, transaction

from .models import ConfigVersion

GATEWAY = "gateway"


def bump() -> None:
    """Move the counter. Call after the change is committed (see `bump_on_commit`). Each
    bump writes a fresh random value rather than adding one, so a reader never mistakes a
    recreated row (a restored or flushed database) for the one it saw."""
    version = secrets.randbits(62)
    if ConfigVersion.objects.filter(name=GATEWAY).update(version=version):
        return
    try:
        with transaction.atomic():
            ConfigVersion.objects.create(name=GATEWAY, version=version)
    except IntegrityError:  # created concurrently: move that row
        ConfigVersion.objects.filter(name=GATEWAY).update(version=version)


def bump_on_commit() -> None:
    """Readers that see the new number then also see the change itself."""
    transaction.on_commit(bump)


def current() -> int:
    return ConfigVersion.objects.filter(name=GATEWAY).values_list("version", flat=True).first() or 0


async def acurrent() -> int:
    return await ConfigVersion.objects.filter(name=GATEWAY).values_list("version", flat=True).afirst() or 0
