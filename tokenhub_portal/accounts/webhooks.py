"""Team webhooks: the URL check that keeps them from reaching inside the network (SSRF),
the secret, and the signature receivers verify.

A webhook URL must be http(s) and every address its host resolves to must be public:
loopback, private, link-local, multicast, reserved and unspecified addresses are refused
(IPv4-mapped IPv6 included), unless the operator sets WEBHOOK_ALLOW_PRIVATE=1. The check
runs when the URL is set and again before every delivery (DNS can change in between).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from urllib.parse import urlsplit

from django.conf import settings

SIGNATURE_HEADER = "X-TokenHub-Signature"


class WebhookURLError(ValueError):
    """The URL may not be used as a webhook (its message says why)."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


def check_webhook_url(url: str) -> str:
    """The URL, stripped, if it may receive webhooks; WebhookURLError otherwise."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookURLError("This is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookURLError("A webhook URL must start with https:// (or http://) and name a host.")
    if len(url) > 500:
        raise WebhookURLError("A webhook URL can be at most 500 characters.")
    if getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False):
        return url
    try:
        infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise WebhookURLError(f"The host {parts.hostname!r} cannot be resolved.") from None
    addresses = {info[4][0] for info in infos}
    if not addresses or not all(_public(a) for a in addresses):
        raise WebhookURLError("Webhook URLs may not point to loopback, private or link-local addresses.")
    return url


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(body: bytes, secret: str) -> str:
    """The X-TokenHub-Signature value: sha256=<hex HMAC-SHA256 of the raw body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    return hmac.compare_digest(signature(body, secret), header or "")
