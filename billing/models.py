from decimal import Decimal

from django.conf import settings
from django.db import models

from tokenhub_portal.accounts.models import ApiKey, Team

from .tokens import TokenCounts

# Charges are kept to 1e-10 USD: a single cache-read token of the cheapest model
# (0.80/1M × 0.1 = 8e-8) is represented exactly, with headroom for editable multipliers.
MONEY = {"max_digits": 24, "decimal_places": 10}


class Model(models.Model):
    """A row of the model table: what clients call, what goes upstream, what it can do."""

    class Lifecycle(models.TextChoices):
        ACTIVE = "active", "Active"
        DEPRECATED = "deprecated", "Deprecated"
        RETIRED = "retired", "Retired upstream"

    class ThinkingMode(models.TextChoices):
        """How reasoning requests reach this model (reasoning_effort, reasoning.*)."""

        NONE = "none", "No extended thinking"
        ENABLED = "enabled", "thinking.type enabled + budget_tokens"
        ADAPTIVE = "adaptive", "thinking.type adaptive + output_config.effort"

    public_id = models.CharField(max_length=100, unique=True, help_text="e.g. claude-sonnet-4-6")
    aliases = models.JSONField(default=list, blank=True, help_text='e.g. ["anthropic/claude-sonnet-4-6"]')
    upstream_id = models.CharField(max_length=100, help_text="model id sent to Anthropic")
    tier = models.CharField(max_length=50, help_text="pricing tier name, e.g. Sonnet 4.6")
    context_window = models.PositiveIntegerField(default=200_000)
    max_output_tokens = models.PositiveIntegerField(default=64_000)
    accepts_sampling = models.BooleanField(default=True, help_text="accepts non-default temperature/top_p")
    accepts_temperature_with_top_p = models.BooleanField(default=False)
    structured_output = models.BooleanField(default=False, help_text="native JSON-schema output")
    prefill = models.BooleanField(default=True, help_text="accepts a trailing assistant message")
    thinking_mode = models.CharField(
        max_length=10, choices=ThinkingMode.choices, default=ThinkingMode.NONE,
        help_text="the form of extended thinking the model accepts upstream",
    )
    lifecycle = models.CharField(max_length=12, choices=Lifecycle.choices, default=Lifecycle.ACTIVE)
    retired_on = models.DateField(null=True, blank=True)
    successor = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    enabled = models.BooleanField(default=True)
    recommended = models.BooleanField(default=False)
    position = models.PositiveSmallIntegerField(default=100)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "public_id"]

    def __str__(self) -> str:
        return self.public_id


class Price(models.Model):
    """A version of a model's prices. Rows are never edited once charges use them:
    re-pricing adds a row with a later effective date."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="prices")
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cache_write_5m_multiplier = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("1.25"))
    cache_write_1h_multiplier = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("2"))
    cache_read_multiplier = models.DecimalField(max_digits=8, decimal_places=4, default=Decimal("0.1"))
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="unique_price_version")]

    def __str__(self) -> str:
        return f"{self.model_id}@{self.effective_from:%Y-%m-%d}: {self.input_per_mtok}/{self.output_per_mtok}"


class RequestRecord(models.Model):
    """One call to the gateway, successful or not: the metering record of SPEC §5."""

    class Status(models.TextChoices):
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled by client"

    class Api(models.TextChoices):
        """Which front door (wire protocol) the call came through."""

        CHAT_COMPLETIONS = "chat.completions", "Chat Completions"
        MESSAGES = "messages", "Anthropic Messages"
        RESPONSES = "responses", "Responses"

    generation_id = models.CharField(max_length=64, unique=True)
    api = models.CharField(max_length=20, choices=Api.choices, default=Api.CHAT_COMPLETIONS)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="requests")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="requests")
    end_user = models.CharField(max_length=256, blank=True)
    requested_model = models.CharField(max_length=100)
    model = models.ForeignKey(Model, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    upstream_model = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    streamed = models.BooleanField(default=False)
    # The four input classes are kept apart (Anthropic's input_tokens excludes cache).
    input_tokens = models.PositiveIntegerField(default=0)
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # True when output was counted from what was streamed (client cancelled mid-stream).
    output_estimated = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=20, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    upstream_request_id = models.CharField(max_length=100, blank=True)
    prompt = models.JSONField(null=True, blank=True)      # only with STORE_CONTENT
    completion = models.TextField(blank=True)             # only with STORE_CONTENT
    created = models.DateTimeField(db_index=True)
    # Set when the Charge has been written; the pricing task claims the nulls.
    priced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "proxy_requestrecord"
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["team", "-created"], name="req_team_created"),
            models.Index(fields=["api_key", "-created"], name="req_key_created"),
            models.Index(fields=["created"], condition=models.Q(priced_at__isnull=True), name="req_unpriced"),
            # The request log's end-user filter (only rows that name one are indexed).
            models.Index(fields=["team", "end_user", "-created"], condition=~models.Q(end_user=""),
                         name="req_team_user_created"),
        ]

    def __str__(self) -> str:
        return self.generation_id

    @property
    def billable(self) -> bool:
        return self.status in (self.Status.SUCCESS, self.Status.CANCELLED)

    @property
    def tokens(self) -> TokenCounts:
        return TokenCounts.from_columns(self)


class Charge(models.Model):
    """One ledger line per priced request; unique on the request so a task that runs
    twice cannot charge twice."""

    request = models.OneToOneField("RequestRecord", on_delete=models.PROTECT, related_name="charge")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="charges")
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="charges")
    model = models.ForeignKey(Model, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, null=True, blank=True, related_name="charges")
    amount = models.DecimalField(**MONEY)
    estimated = models.BooleanField(default=False, help_text="output counted from a cancelled stream")
    # When the request happened: months are cut on this, not on when it was priced.
    occurred_at = models.DateTimeField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["team", "occurred_at"], name="charge_team_time"),
            models.Index(fields=["api_key", "occurred_at"], name="charge_key_time"),
            # The live tail across all teams (operator console, roll-up recomputes).
            models.Index(fields=["occurred_at"], name="charge_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.amount}"


class CreditEntry(models.Model):
    """Prepaid credit ledger: top-ups and adjustments (never edited, only appended)."""

    class Kind(models.TextChoices):
        TOPUP = "topup", "Top-up"
        ADJUSTMENT = "adjustment", "Adjustment"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="credit_entries")
    amount = models.DecimalField(**MONEY)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TOPUP)
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]
        verbose_name_plural = "credit entries"

    def __str__(self) -> str:
        return f"{self.team}: {self.amount} ({self.kind})"


class UsageRollup(models.Model):
    """Hourly usage per (team, key, model): what dashboards and reports read instead of
    millions of raw records. Maintained by `billing.rollups.roll_up` (Celery beat, every
    minute), which recomputes whole hours from the ledger, so it is idempotent."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    model = models.ForeignKey(Model, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    hour = models.DateTimeField(help_text="start of the UTC hour")
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    cache_write_5m_tokens = models.BigIntegerField(default=0)
    cache_write_1h_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(default=Decimal(0), **MONEY)

    class Meta:
        ordering = ["-hour"]
        indexes = [
            models.Index(fields=["team", "hour"], name="rollup_team_hour"),
            models.Index(fields=["hour"], name="rollup_hour"),
        ]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.api_key_id}/{self.model_id} @ {self.hour:%Y-%m-%d %H}:00"


class RollupState(models.Model):
    """Singleton row: the roll-up watermark, and the lock concurrent runs queue on."""

    name = models.CharField(max_length=50, unique=True)
    watermark = models.DateTimeField(null=True, blank=True, help_text="charges created before this are folded")
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.watermark}"


class MonthlyStatement(models.Model):
    """A team's statement for one calendar month (BILLING_TIME_ZONE), computed from the
    ledger (Charges). Regenerating it gives the same numbers."""

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="statements")
    month = models.DateField(help_text="first day of the month")
    total = models.DecimalField(**MONEY)
    requests = models.PositiveIntegerField(default=0)
    # {"by_model": [...], "by_key": [...], "total": {...}}: money as strings.
    data = models.JSONField()
    generated_at = models.DateTimeField()

    class Meta:
        ordering = ["-month", "team"]
        constraints = [models.UniqueConstraint(fields=["team", "month"], name="unique_statement_month")]

    def __str__(self) -> str:
        return f"{self.team} {self.month:%Y-%m}: {self.total}"


class StoredResponse(models.Model):
    """A Responses API answer kept at the client's request (``store``, the default) so it can
    be read back, listed and continued with ``previous_response_id`` by the same team.
    Separate from STORE_CONTENT: storing is the client's explicit choice. Rows past
    ``expires_at`` (RESPONSES_RETENTION_DAYS) are deleted by a periodic task."""

    response_id = models.CharField(max_length=64, unique=True)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    previous_response_id = models.CharField(max_length=64, blank=True)
    input_items = models.JSONField(help_text="this request's input items, with ids")
    response = models.JSONField(help_text="the response object, reasoning signatures included")
    created = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.response_id
class BudgetAlert(models.Model):
    """One threshold crossing: a key's or team's spend reached `threshold`% of its limit,
    budget or prepaid credit in one period (or, at 100%, a request was refused for lack
    of it). The unique constraint is the guard against telling anyone twice: whoever
    inserts the row sends the e-mail and the webhook; everyone else gets IntegrityError.
    Delivery state is kept here so a retry never repeats a delivery that succeeded."""

    class Scope(models.TextChoices):
        TEAM_BUDGET = "team_budget", "Team monthly budget"
        CREDIT = "credit", "Prepaid credit"
        KEY_LIMIT = "key_limit", "Key spend limit"

    class Trigger(models.TextChoices):
        SPEND = "spend", "Spend reached the threshold"
        REFUSED = "refused", "A request was refused"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budget_alerts")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    scope = models.CharField(max_length=12, choices=Scope.choices)
    owner_id = models.BigIntegerField(help_text="the team's or the key's id")
    # "2026-05" for monthly limits; "credit-<last credit entry id>" for a prepaid balance
    # (a top-up starts a new period).
    period = models.CharField(max_length=40)
    threshold = models.PositiveSmallIntegerField()
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.SPEND)
    limit = models.DecimalField(**MONEY)
    spent = models.DecimalField(**MONEY)
    payload = models.JSONField(help_text="the webhook body (its raw bytes are what is signed)")
    created = models.DateTimeField(auto_now_add=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="failed delivery attempts")
    last_error = models.CharField(max_length=300, blank=True)
    # A delivery holds this lease while it sends, so two workers never send the same alert.
    lease_until = models.DateTimeField(null=True, blank=True)
    # Set while something is left to deliver: when the next attempt is due.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["scope", "owner_id", "period", "threshold"],
                                               name="unique_alert_crossing")]
        indexes = [models.Index(fields=["next_attempt_at"], condition=models.Q(next_attempt_at__isnull=False),
                                name="alert_pending_delivery")]

    def __str__(self) -> str:
        return f"{self.team_id} {self.scope}:{self.owner_id} {self.period} {self.threshold}%"
