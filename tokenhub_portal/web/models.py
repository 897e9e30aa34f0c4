"""The web layer's own table: replays of management API writes (Idempotency-Key)."""
from django.db import models


class IdempotentRequest(models.Model):
    """A management API write made with an `Idempotency-Key` header, kept for 24 hours so
    that a retry gets the first answer instead of doing the write again.

    Neither the idempotency key nor the response is stored in the clear: the key as a
    SHA-256, the response (which may carry a new API key's secret) encrypted under a key
    derived from SECRET_KEY and the idempotency key, so only a retry can read it."""

    actor = models.CharField(max_length=40, help_text="key:<id> or user:<id>: whose requests share the key space")
    key_digest = models.CharField(max_length=64)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body")
    status = models.PositiveSmallIntegerField()
    response = models.BinaryField()
    created = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["actor", "key_digest"], name="unique_idempotency_key")]

    def __str__(self) -> str:
        return f"{self.actor} {self.key_digest[:12]}… → {self.status}"
