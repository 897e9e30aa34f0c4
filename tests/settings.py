"""Production settings plus the stand-ins tests need (DEBUG stays off)."""
import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")

from tokenhub_portal.settings import *  # noqa: E402,F403
from tokenhub_portal.settings import BASE_DIR, DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so gateway and Celery subprocesses share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}

if os.environ.get("TOKENHUB_TEST_CLOCK"):  # gateway subprocesses: a clock the test can move
    from tests.clock import install

    install(os.environ["TOKENHUB_TEST_CLOCK"])
# Subprocesses (gateway, Celery worker) write their e-mails here, one file per message;
# the test process itself uses Django's in-memory outbox (pytest-django sets it).
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = str(BASE_DIR / "var" / "test-mail")
