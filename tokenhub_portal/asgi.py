"""The one ASGI application: the lean API app for /api/v1, /v1 and the operations
endpoints, Django for the portal and admin, and lifespan hooks for the gateway's
shared resources (upstream connection pool, record writer, key invalidation)."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenhub_portal.settings")

from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()
if settings.DEBUG:  # production serves collected static files from the front proxy
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_app = ASGIStaticFilesHandler(django_app)

from proxy import app as api  # noqa: E402  (Django must be set up first)
from proxy import runtime  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] == "http" and api.handles(scope["path"]):
        await api.app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await runtime.lifespan(receive, send)
    else:
        await django_app(scope, receive, send)
