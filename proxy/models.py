from django.conf import settings
from django.db import models

from tokenhub_portal.models import Team


class ApiKey(models.Model):
    """A team's API key. Only the SHA-256 of the key is stored, plus a display prefix."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Public model ids this key may call; empty = every enabled model.
    allowed_models = models.JSONField(default=list, blank=True)
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    tpm_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_limit = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"


class RequestRecord(models.Model):
    """One call to the gateway, successful or not: the metering record of SPEC §5."""

    class Status(models.TextChoices):
        SUCCESS = "success", "Success"
        ERROR = "error", "Error"
        CANCELLED = "cancelled", "Cancelled by client"

    generation_id = models.CharField(max_length=64, unique=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.PROTECT, related_name="requests")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="requests")
    end_user = models.CharField(max_length=256, blank=True)
    requested_model = models.CharField(max_length=100)
    model = models.ForeignKey("billing.Model", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
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
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["team", "-created"], name="req_team_created"),
            models.Index(fields=["api_key", "-created"], name="req_key_created"),
            models.Index(fields=["created"], condition=models.Q(priced_at__isnull=True), name="req_unpriced"),
        ]

    def __str__(self) -> str:
        return self.generation_id

    @property
    def billable(self) -> bool:
        return self.status in (self.Status.SUCCESS, self.Status.CANCELLED)
