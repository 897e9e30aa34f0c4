"""Thinking signatures the simulator can check, like the real API does when thinking
blocks come back in a later turn.

A signature is an HMAC-SHA256 (simulator-local secret, ``SIM_SIGNING_SECRET``) over a
random nonce and the thinking text exactly as returned, so a gateway that alters the
text or the signature, or drops the signature, gets the real API's 400. Redacted
thinking ``data`` is an opaque blob verified the same way. The secret has a fixed
default so signatures survive a simulator restart, as real ones do.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

_SECRET = os.environ.get("SIM_SIGNING_SECRET", "tokenhub-simulator-thinking-signatures").encode()
_THINKING_TAG = b"\x12"  # base64 of a signature starts with "E", like the real ones
_REDACTED_TAG = b"\x1a"
_THINKING_NONCE = 12
_REDACTED_NONCE = 48  # redacted blobs are long and opaque in the real API too
_MAC_BYTES = 32


def _mac(kind: bytes, nonce: bytes, payload: bytes) -> bytes:
    return hmac.new(_SECRET, kind + nonce + payload, hashlib.sha256).digest()


def _unpack(value: object, tag: bytes, nonce_bytes: int) -> tuple[bytes, bytes] | None:
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 1 + nonce_bytes + _MAC_BYTES or raw[:1] != tag:
        return None
    return raw[1 : 1 + nonce_bytes], raw[1 + nonce_bytes :]


def sign_thinking(text: str) -> str:
    nonce = os.urandom(_THINKING_NONCE)
    return base64.b64encode(_THINKING_TAG + nonce + _mac(b"thinking", nonce, text.encode())).decode()


def thinking_signature_ok(text: str, signature: object) -> bool:
    parts = _unpack(signature, _THINKING_TAG, _THINKING_NONCE)
    return parts is not None and hmac.compare_digest(parts[1], _mac(b"thinking", parts[0], text.encode()))


def redacted_data() -> str:
    nonce = os.urandom(_REDACTED_NONCE)
    return base64.b64encode(_REDACTED_TAG + nonce + _mac(b"redacted", nonce, b"")).decode()


def redacted_data_ok(data: object) -> bool:
    parts = _unpack(data, _REDACTED_TAG, _REDACTED_NONCE)
    return parts is not None and hmac.compare_digest(parts[1], _mac(b"redacted", parts[0], b""))
