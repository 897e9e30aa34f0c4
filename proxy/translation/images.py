"""Image parts: data URLs become base64 sources (media type sniffed from the bytes), http(s)
URLs pass on as URL sources; the gateway never fetches a user URL itself."""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from proxy.errors import GatewayError, invalid

from .fields import wrong_type

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # Anthropic's per-image limit (§5.5)
_MAX_IMAGE_B64_CHARS = 4 * math.ceil(MAX_IMAGE_BYTES / 3)
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def image_block(image_url: Any, where: str) -> dict:
    """http(s) URLs become URL sources (never fetched by us); data URLs base64 sources.
    ``image_url`` is Chat Completions' ``{"url": ...}`` or the Responses API's bare string."""
    if isinstance(image_url, dict):
        url, where = image_url.get("url"), f"{where}.url"
    else:
        url = image_url
    if not isinstance(url, str):
        raise wrong_type(f"{where} must be a string.", where)
    scheme = url[:8].lower()
    if scheme.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if scheme.startswith("data:"):
        return {"type": "image", "source": _base64_image_source(url, where)}
    raise invalid(f"{where} must be an http(s) URL or a data: URL with base64 image data.", where)


def _base64_image_source(url: str, where: str) -> dict:
    header, comma, data = url.partition(",")
    params = header[5:].split(";")
    if not comma or "base64" not in params[1:]:
        raise invalid(f"{where}: image data URLs must be base64, e.g. data:image/png;base64,<data>.", where)
    declared = params[0].strip().lower()
    if declared not in _IMAGE_TYPES and declared != "image/jpg":
        raise invalid(f"{where}: unsupported image type {declared[:64]!r}; Claude accepts "
                      "image/jpeg, image/png, image/gif and image/webp.", where, code="unsupported_value")
    if len(data) > _MAX_IMAGE_B64_CHARS:
        raise _image_too_large(where)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"{where}: the image data is not valid base64.", where) from None
    if len(raw) > MAX_IMAGE_BYTES:
        raise _image_too_large(where)
    media_type = _sniff_image_type(raw)
    if media_type is None:
        raise invalid(f"{where}: the image data is not a JPEG, PNG, GIF or WebP image.", where)
    return {"type": "base64", "media_type": media_type, "data": data}


def _image_too_large(where: str) -> GatewayError:
    return invalid(f"{where}: the image exceeds the 5 MB limit per image.", where)


def _sniff_image_type(raw: bytes) -> str | None:
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "image/webp"
    return None
