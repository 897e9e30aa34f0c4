"""The one ASGI application: the lean API app for /api/v1, /v1 and the operations
endpoints, Django for the portal, the admin and the management API, and lifespan hooks
for the gateway's process resources (proxy/runtime.py).

Under the API mounts, the management API's paths (a fixed set, checked first: one set
lookup and one prefix test) go to Django REST framework; every other path, the
model-calling and read endpoints, to the lean router."""
import os
from pathlib import Path

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tokenhub_portal.settings")
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # prometheus_client picks multiprocess mode once, when first imported (proxy/metrics.py),
    # so a server process sets it up first. Workers of one uvicorn master share its pid as
    # their parent: one directory per server.
    metrics_dir = Path(settings.BASE_DIR) / "var" / "metrics" / str(os.getppid())
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

django_app = get_asgi_application()  # static files: WhiteNoise middleware, in every mode

# The gateway's modules use models at import, so they come after Django's set-up above.
from proxy import app as api  # noqa: E402
from proxy import runtime  # noqa: E402
from tokenhub_portal.web.api.routes import is_management_path  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] == "http" and not is_management_path(scope["path"]) and api.handles(scope["path"]):
        async with runtime.current().serving():  # a stop waits for it up to GRACEFUL_SECONDS
            await api.app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await runtime.lifespan(receive, send)
    else:
        await django_app(scope, receive, send)
