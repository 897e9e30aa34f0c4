"""`Idempotency-Key` on management API writes: a retried request gets the first answer
instead of doing the write again (a retried POST /keys creates one key, not two).

The first request's write and the stored answer commit in one transaction; a concurrent
duplicate blocks on the unique (actor, key) row until then and replays it. Answers of 5xx
and failed validation are not stored, so they can be retried. The same key with another
body or path is a 422; answers are kept for IDEMPOTENCY_SECONDS."""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from datetime import timedelta

import orjson
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from ..models import IdempotentRequest
from .errors import ApiError

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


def _derive(scope: str, key: str) -> tuple[str, Fernet]:
    """The stored lookup digest, and the cipher only a request with the same key can rebuild."""
    secret = settings.SECRET_KEY.encode()
    digest = hmac.new(secret, f"lookup\0{scope}\0{key}".encode(), hashlib.sha256).hexdigest()
    cipher_key = hmac.new(secret, f"cipher\0{scope}\0{key}".encode(), hashlib.sha256).digest()
    return digest, Fernet(base64.urlsafe_b64encode(cipher_key))


def _fingerprint(request) -> str:
    h = hashlib.sha256()
    for part in (request.method, request.get_full_path(), request.body):
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def idempotent(view_method):
    """Decorates a DRF view's write method (after authentication: the actor scopes the key)."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        if not key or len(key) > MAX_LENGTH or not key.isprintable():
            raise ApiError(400, f"{HEADER} must be 1 to {MAX_LENGTH} printable characters.",
                           code="invalid_idempotency_key", param=HEADER)
        digest, cipher = _derive(request.user.idempotency_scope, key)
        fingerprint = _fingerprint(request)
        now = timezone.now()
        with transaction.atomic():
            IdempotentRequest.objects.filter(created__lt=now - timedelta(seconds=settings.IDEMPOTENCY_SECONDS)).delete()
            try:
                with transaction.atomic():
                    row = IdempotentRequest.objects.create(
                        actor=request.user.idempotency_scope, key_digest=digest, fingerprint=fingerprint,
                        status=0, response=b"", created=now)
            except IntegrityError:  # done before (or just now, by a concurrent duplicate)
                row = None
            if row is not None:
                response = view_method(self, request, *args, **kwargs)
                if response.status_code >= 500:
                    transaction.set_rollback(True)
                    return response
                row.status = response.status_code
                row.response = cipher.encrypt(orjson.dumps(response.data))
                row.save(update_fields=["status", "response"])
                return response
        return _replay(request.user.idempotency_scope, digest, cipher, fingerprint)

    return wrapper


def _replay(scope: str, digest: str, cipher: Fernet, fingerprint: str) -> Response:
    row = IdempotentRequest.objects.filter(actor=scope, key_digest=digest).first()
    if row is None:  # the first request failed and rolled back meanwhile: let the client retry
        raise ApiError(409, f"A request with this {HEADER} is being processed; retry.", code="idempotency_conflict",
                       param=HEADER)
    if row.fingerprint != fingerprint:
        raise ApiError(422, f"This {HEADER} was already used for a different request.",
                       code="idempotency_key_reused", param=HEADER)
    try:
        data = orjson.loads(cipher.decrypt(bytes(row.response)))
    except InvalidToken:  # SECRET_KEY rotated since
        raise ApiError(409, f"The first answer to this {HEADER} can no longer be read; use a new key.",
                       code="idempotency_conflict", param=HEADER) from None
    return Response(data, status=row.status, headers={"Idempotent-Replayed": "true"})
