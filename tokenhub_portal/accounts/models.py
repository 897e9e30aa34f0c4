"""Teams, their members and their API keys: the bottom layer every other app builds on.

The tables keep the names they were created with (the models moved here from the
`tokenhub_portal` and `proxy` apps without moving any data)."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

DEFAULT_ALERT_THRESHOLDS = (80, 100)


def default_alert_thresholds() -> list[int]:
    return list(DEFAULT_ALERT_THRESHOLDS)


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    # Hard cap on the team's spend per calendar month (USD); null = no budget.
    monthly_budget = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    # Prepaid teams are refused once their credit balance (credits - charges) is spent.
    prepaid = models.BooleanField(default=False)
    # An operator's stop: every key of a suspended team gets 403 from every gateway process.
    suspended = models.BooleanField(default=False)
    # Percentages of the budget, the prepaid credit and each key's limit at which the
    # owners/admins are told (once per threshold per period).
    alert_thresholds = models.JSONField(default=default_alert_thresholds, blank=True)
    # Budget alerts are POSTed here too, signed with webhook_secret (HMAC-SHA256).
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=100, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tokenhub_portal_team"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "tokenhub_portal_membership"
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    # True on the stand-in membership a staff user gets while viewing another team's
    # portal (never saved): read-only, whatever the role says.
    operator_view = False

    @property
    def can_manage(self) -> bool:
        return not self.operator_view and self.role in (self.Role.OWNER, self.Role.ADMIN)


class Invitation(models.Model):
    """An emailed link that lets its holder join a team. Single use, expires."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    # 256 random bits, URL-safe; the link is the secret.
    token = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                   blank=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True,
                                    blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "tokenhub_portal_invitation"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.email} → {self.team} ({self.role})"

    @property
    def pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


class ApiKey(models.Model):
    """A team's API key. Only the SHA-256 of the key is stored, plus a display prefix.

    Inference keys call models. Management keys (`kind=management`) call the management
    API and never a model; a management key without a team is an operator key, which
    acts on every team."""

    class Kind(models.TextChoices):
        INFERENCE = "inference", "Inference (calls models)"
        MANAGEMENT = "management", "Management (manages keys, budgets, usage)"

    class LimitReset(models.TextChoices):
        """When a key's spend limit starts over, in BILLING_TIME_ZONE (weeks start on
        Monday). Empty: the calendar month, as keys always had."""

        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys", null=True, blank=True,
                             help_text="Empty only for operator keys (management keys for every team).")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INFERENCE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Reversible, unlike revocation: a disabled key is refused until it is enabled again.
    disabled = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Public model ids this key may call; empty = every enabled model.
    allowed_models = models.JSONField(default=list, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    # The key's spend limit (USD) per `limit_reset` period (the column keeps its first name).
    monthly_limit = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True,
                                        verbose_name="spend limit",
                                        help_text="USD per limit period (see limit reset); empty = no limit.")
    limit_reset = models.CharField(max_length=8, choices=LimitReset.choices, null=True, blank=True,
                                   help_text="Empty = calendar month.")
    metadata = models.JSONField(default=dict, blank=True, help_text="Free-form labels set through the API.")

    class Meta:
        db_table = "proxy_apikey"
        ordering = ["-created"]
        constraints = [
            models.CheckConstraint(condition=models.Q(team__isnull=False) | models.Q(kind="management"),
                                   name="apikey_team_unless_operator"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    def clean(self) -> None:
        if self.team_id is None and self.kind != self.Kind.MANAGEMENT:
            raise ValidationError({"team": "Only management keys can be without a team (an operator key, for "
                                           "every team)."})

    @property
    def is_management(self) -> bool:
        return self.kind == self.Kind.MANAGEMENT

    @property
    def is_operator(self) -> bool:
        return self.is_management and self.team_id is None

    @property
    def limit_period(self) -> str:
        return self.limit_reset or self.LimitReset.MONTHLY

class ConfigVersion(models.Model):
    """A value moved after every committed change a gateway process caches (keys, teams,
    credits, the model/price table). Without Redis to push changes, each gateway process
    reads this one row every second and drops its caches when it moved."""

    name = models.CharField(max_length=50, unique=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.version}"


class AuditEntry(models.Model):
    """Who changed what, when and from where: keys, limits, budgets, credits, prices and
    team status. Written by signal handlers, so every path (portal, API, admin, commands)
    is covered; never edited."""

    class Source(models.TextChoices):
        PORTAL = "portal", "Portal"
        API = "api", "API"
        ADMIN = "admin", "Admin"
        COMMAND = "command", "Command"
        SYSTEM = "system", "System"

    created = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                              related_name="+")
    # Who, in words: a username, a management key's prefix, the command that ran.
    actor_label = models.CharField(max_length=150, blank=True)
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_entries")
    action = models.CharField(max_length=40)
    target_type = models.CharField(max_length=40)
    target_id = models.CharField(max_length=64, blank=True)
    target = models.CharField(max_length=200, blank=True, help_text="what was changed, in words")
    before = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    after = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.SYSTEM)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["team", "-created"], name="audit_team_created")]

    def __str__(self) -> str:
        return f"{self.created:%Y-%m-%d %H:%M} {self.actor_label or 'system'} {self.action} {self.target}"
