"""Key writes: create, find, revoke. Callers check roles and validate model ids against
the model table (a layer above this one) before they call `create_key`."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from .keys import display_prefix, generate_key, hash_key, looks_like_key
from .models import ApiKey, Team


class KeyOperationError(ValueError):
    """A key operation's input is wrong (unknown model, ambiguous prefix…)."""


@dataclass
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown once, never stored


def create_key(
    team: Team | None,
    *,
    name: str = "",
    created_by=None,
    monthly_limit: Decimal | None = None,
    limit_reset: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    kind: str = ApiKey.Kind.INFERENCE,
    metadata: dict | None = None,
    disabled: bool = False,
) -> IssuedKey:
    """A new key; `allowed_models` must already be canonical public model ids. A
    management key without a team is an operator key; an inference key needs a team."""
    if team is None and kind != ApiKey.Kind.MANAGEMENT:
        raise KeyOperationError("only management (operator) keys can be without a team")
    plaintext = generate_key()
    api_key = ApiKey.objects.create(
        team=team, created_by=created_by, name=name, key_hash=hash_key(plaintext),
        prefix=display_prefix(plaintext), monthly_limit=monthly_limit, limit_reset=limit_reset or None,
        rpm_limit=rpm, tpm_limit=tpm, allowed_models=list(allowed_models or ()), expires_at=expires_at,
        kind=kind, metadata=dict(metadata or {}), disabled=disabled,
    )
    return IssuedKey(api_key, plaintext)


# What `update_key` may change, by the names the callers use → model fields.
EDITABLE = {"name": "name", "disabled": "disabled", "monthly_limit": "monthly_limit", "limit_reset": "limit_reset",
            "rpm": "rpm_limit", "tpm": "tpm_limit", "allowed_models": "allowed_models", "expires_at": "expires_at",
            "metadata": "metadata"}


def update_key(api_key: ApiKey, **changes) -> ApiKey:
    """Edits a key; every gateway process drops its cached copy and the key's limit
    counters are rebuilt from the ledger for the (possibly new) period once the change is
    committed (see proxy.signals). `allowed_models` must already be canonical ids."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise KeyOperationError(f"cannot change {', '.join(sorted(unknown))}")
    if api_key.revoked_at is not None:
        raise KeyOperationError("the key is revoked")
    fields = []
    for name, value in changes.items():
        field = EDITABLE[name]
        if field == "limit_reset":
            value = value or None
        setattr(api_key, field, value)
        fields.append(field)
    if fields:
        api_key.save(update_fields=[*fields, "updated"])
    return api_key


def find_key(key_or_prefix: str) -> ApiKey:
    if looks_like_key(key_or_prefix):
        found = ApiKey.objects.filter(key_hash=hash_key(key_or_prefix)).first()
        if found is None:
            raise KeyOperationError("no such key")
        return found
    matches = list(ApiKey.objects.filter(prefix__startswith=key_or_prefix)[:2]) if len(key_or_prefix) >= 6 else []
    if len(matches) != 1:
        raise KeyOperationError("no key matches that prefix" if not matches else "prefix is ambiguous; give more characters")
    return matches[0]


def revoke_key(api_key: ApiKey) -> ApiKey:
    """Every gateway process refuses the key from the commit on (the gateway listens to
    the save; see proxy.signals)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated"])
    return api_key


# --- teams: budget, status, alerts -----------------------------------------------------------

def set_team_budget(team: Team, monthly_budget: Decimal | None, *, prepaid: bool | None = None) -> Team:
    """A new monthly budget (None = no budget) and, optionally, prepaid billing on/off.
    Every gateway process applies it at once (see proxy.signals and accounts.changes)."""
    if monthly_budget is not None and (not monthly_budget.is_finite() or monthly_budget < 0):
        raise ValueError("the budget must be zero or more USD")
    if monthly_budget is not None and monthly_budget != monthly_budget.quantize(Decimal("0.01")):
        raise ValueError("the budget is in whole cents")
    team.monthly_budget = monthly_budget
    fields = ["monthly_budget"]
    if prepaid is not None:
        team.prepaid = prepaid
        fields.append("prepaid")
    team.save(update_fields=fields)
    return team


def set_team_suspended(team: Team, suspended: bool) -> Team:
    """Suspend (every key of the team gets 403 everywhere within seconds) or resume."""
    if team.suspended != suspended:
        team.suspended = suspended
        team.save(update_fields=["suspended"])
    return team


MAX_THRESHOLDS = 10


def clean_thresholds(values) -> list[int]:
    """Whole percentages of a limit, 1–100, sorted, without repeats."""
    if not isinstance(values, list | tuple):
        raise ValueError("alert thresholds must be a list of percentages")
    out = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
            raise ValueError(f"{value!r} is not a percentage")
        try:
            number = Decimal(str(value).strip().rstrip("%"))
        except ArithmeticError:
            raise ValueError(f"{value!r} is not a percentage") from None
        if not number.is_finite() or number != number.to_integral_value() or not 1 <= number <= 100:
            raise ValueError("each threshold must be a whole percentage from 1 to 100")
        out.add(int(number))
    if len(out) > MAX_THRESHOLDS:
        raise ValueError(f"at most {MAX_THRESHOLDS} thresholds")
    return sorted(out)


def update_team_alerts(team: Team, *, thresholds=None, webhook_url: str | None = None) -> str | None:
    """Set the alert thresholds and/or the webhook URL ("" removes it). A new URL gets a
    new signing secret, returned here once (the caller shows it to the user); otherwise
    None. WebhookURLError/ValueError on bad input, before anything is saved."""
    from .webhooks import check_webhook_url, new_secret

    fields, secret = [], None
    if thresholds is not None:
        team.alert_thresholds = clean_thresholds(thresholds)
        fields.append("alert_thresholds")
    if webhook_url is not None:
        url = check_webhook_url(webhook_url) if webhook_url.strip() else ""
        if url != team.webhook_url or (url and not team.webhook_secret):
            team.webhook_url = url
            team.webhook_secret = secret = new_secret() if url else ""
            fields += ["webhook_url", "webhook_secret"]
    if fields:
        team.save(update_fields=fields)
    return secret or None


def rotate_webhook_secret(team: Team) -> str:
    """A fresh signing secret for the team's webhook, returned once."""
    from .webhooks import new_secret

    if not team.webhook_url:
        raise ValueError("the team has no webhook URL")
    team.webhook_secret = new_secret()
    team.save(update_fields=["webhook_secret"])
    return team.webhook_secret
