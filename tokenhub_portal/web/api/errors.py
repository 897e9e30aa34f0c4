"""Errors of the management API in the OpenAI shape the rest of /api/v1 uses:
``{"error": {"message", "type", "param", "code"}}``, naming the offending field."""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    405: "invalid_request_error", 409: "conflict_error", 415: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(exceptions.APIException):
    """An error with a status, a machine-readable code and (optionally) the field it is about."""

    def __init__(self, status_code: int, message: str, *, code: str, param: str | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.param = param


def error_body(status_code: int, message: str, *, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status_code, "api_error" if status_code >= 500
                                                             else "invalid_request_error"),
                      "param": param, "code": code}}


def _first(detail, path: str = "") -> tuple[str, str | None, str | None]:
    """(message, param, code) of the first problem in a DRF error detail tree."""
    if isinstance(detail, dict):
        for name, inner in detail.items():
            field = path if name == "non_field_errors" else (f"{path}.{name}" if path else str(name))
            return _first(inner, field)
    if isinstance(detail, list) and detail:
        for i, inner in enumerate(detail):
            if isinstance(inner, dict | list):  # an item of a list field
                return _first(inner, f"{path}[{i}]")
        return _first(detail[0], path)
    code = getattr(detail, "code", None)
    return str(detail), path or None, code


def openai_exception_handler(exc, context):
    from rest_framework.views import exception_handler  # not at import: DRF's settings import this module

    if isinstance(exc, Http404):
        exc = ApiError(404, str(exc) if str(exc) and "No " not in str(exc) else "Not found.", code="not_found")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected errors: Django's 500 handling (logged)
    if isinstance(exc, exceptions.ValidationError):
        message, param, code = _first(exc.detail)
        if param and not message.startswith(param):
            message = f"{param}: {message}"
        code = "invalid_value" if code in (None, "invalid") else code
    else:
        message, param, code = _first(exc.detail)
        param = getattr(exc, "param", None)
        code = code if isinstance(exc, ApiError) else (exc.default_code if code in (None, "error") else code)
    response.data = error_body(response.status_code, message, code=code, param=param)
    return response


def json_error(status_code: int, message: str, *, code: str, param: str | None = None) -> JsonResponse:
    """For paths no DRF view answers (an unknown management path)."""
    return JsonResponse(error_body(status_code, message, code=code, param=param), status=status_code)


def not_found_view(request, *args, **kwargs):
    return json_error(status.HTTP_404_NOT_FOUND, f"Unknown endpoint: {request.method} {request.path}",
                      code="unknown_url")



def page_not_found(request, exception=None):
    """Django's 404 handler: the API's error shape under the API mounts, the portal's page elsewhere."""
    from django.conf import settings
    from django.views.defaults import page_not_found as portal_not_found

    if any(request.path == m or request.path.startswith(m + "/") for m in settings.API_MOUNTS):
        return not_found_view(request)
    return portal_not_found(request, exception)
