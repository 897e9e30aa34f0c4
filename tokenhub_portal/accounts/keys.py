"""API key material: generation and hashing. Keys carry 256 bits of randomness, so a
plain SHA-256 (as Stripe and GitHub do for tokens) is enough at rest; no slow KDF
is needed and lookups stay O(1) on the hot path."""
from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "th-"
DISPLAY_PREFIX_LEN = 11  # "th-" + 8 characters


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)  # 43 URL-safe characters


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def display_prefix(plaintext: str) -> str:
    return plaintext[:DISPLAY_PREFIX_LEN]


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) >= len(KEY_PREFIX) + 40
