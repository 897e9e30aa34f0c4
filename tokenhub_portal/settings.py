"""TokenHub settings: everything comes from the environment (see README 'Configure')."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from .config import env_bool, env_choice, env_int, env_list, env_str, env_url, proxy_ssl_header

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set (or DEBUG=1 for a development default)")
    SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS (see README 'Deploy'): all off by default so `make run` works over plain HTTP ------
# Behind a TLS-terminating proxy, name the header it sets (e.g. X-Forwarded-Proto) so Django
# knows the request was HTTPS. Opt-in only: trusting a header a client can forge is unsafe
# unless the proxy always overwrites it.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header("SECURE_PROXY_SSL_HEADER")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Prometheus scrapes the process directly over HTTP; /metrics still needs its token.
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",  # sign-in throttling (portal and admin)
    # Bottom to top: teams and keys, billing, the gateway, the web. `tokenhub_portal`
    # (no models any more) keeps the migrations that created the team tables.
    "tokenhub_portal",
    "tokenhub_portal.accounts",
    "billing",
    "proxy",
    "tokenhub_portal.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (portal, admin, API docs) served by the app itself, compressed and cached.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tokenhub_portal.web.middleware.AuditContextMiddleware",  # who did it, for the audit log
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a lockout into the lockout page (Django views only)
]

ROOT_URLCONF = "tokenhub_portal.web.urls"
ASGI_APPLICATION = "tokenhub_portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_CONNECT_TIMEOUT = 5  # seconds
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
except Exception as exc:  # dj_database_url raises several types for bad URLs
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by the server, not quoted into the SQL text by the client: the
    # request-record INSERT has ~25 of them, and client-side quoting was its main CPU cost.
    # A database that does not answer must fail a connection attempt quickly (it is then
    # retried, or the record goes to the spool) rather than hang the thread that waits on it.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "connect_timeout": DATABASE_CONNECT_TIMEOUT}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", None, ("redis", "rediss"))  # what both Celery and redis-py accept
# The budget alerts' running totals (billing.alerts) are shared by every Celery worker
# through the cache; without Redis there is one process and its memory will do.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}

# Celery: without a broker, tasks run in-process so `make run` needs nothing else.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a worker that dies mid-task leaves it for another
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A Redis restart must not end a worker: reconnect for as long as it takes. (Database
# connections are health-checked before every task by Celery's Django fix-up, through
# CONN_HEALTH_CHECKS above, so a PostgreSQL restart heals at the next task.)
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# With acks_late, a task running when the broker connection drops is redelivered: stop it
# rather than run it twice at once (the tasks are idempotent, this just saves the work).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
# Seconds between pricing runs: the delay before a request's cost is final.
PRICING_INTERVAL_SECONDS = float(env_int("PRICING_INTERVAL_MS", 2000, minimum=100)) / 1000
CELERY_BEAT_SCHEDULE = {
    "price-finished-requests": {"task": "billing.tasks.price_finished_requests",
                                "schedule": PRICING_INTERVAL_SECONDS},
}

# --- Sign-in throttling (django-axes) ---------------------------------------------------
# Failed sign-ins (portal and admin: both go through django.contrib.auth) are counted in
# the database, so every process sees them. After LOGIN_FAILURE_LIMIT failures for one
# username, or from one client address, sign-in is refused for LOGIN_LOCKOUT_MINUTES; a
# successful sign-in resets the count. The API (th- keys) does not go through this.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out attempts before any password check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks: per account and per address
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
# Behind N proxies that append to X-Forwarded-For, the client is the N-th address from the
# right (what a client writes further left is not trusted). 0: the socket's address.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "tokenhub_portal.web.signin.client_ip"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Calendar months for spend limits and reports are cut in this zone.
BILLING_TIME_ZONE = env_str("BILLING_TIME_ZONE", "UTC")

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves the apps' static files straight from where they are found, so the
# portal and the API docs work with DEBUG=0 without a front proxy and without a
# collectstatic step; files collected into STATIC_ROOT are served too.
WHITENOISE_USE_FINDERS = True
try:  # WhiteNoise warns at every start when the collected-files directory is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass
WHITENOISE_MAX_AGE = 3600
LOGIN_URL = "/accounts/login/"

# --- Upstream (Anthropic) -------------------------------------------------------------
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_url("ANTHROPIC_BASE_URL", "https://api.anthropic.com", ("http", "https")).rstrip("/")
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_TIMEOUT = env_int("ANTHROPIC_TIMEOUT", 600, minimum=1)
ANTHROPIC_MAX_RETRIES = env_int("ANTHROPIC_MAX_RETRIES", 2, minimum=0)
UPSTREAM_TRANSPORT = env_choice("UPSTREAM_TRANSPORT", "aiohttp", ("aiohttp", "httpx"))
API_MOUNTS = ("/api/v1", "/v1")
# During a /messages stream, a ping goes out after this many seconds without a byte
# (Claude Code gives up on a connection silent for about 20 s while the model thinks).
STREAM_KEEPALIVE_SECONDS = env_int("STREAM_KEEPALIVE_SECONDS", 15, minimum=1)
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 32 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
# Prompt/completion text is not stored unless an operator turns this on.
STORE_CONTENT = env_bool("STORE_CONTENT", False)
# Responses API `store` (the client's choice, default true): kept per team this many days.
# RESPONSES_STORE=0 turns storage off (then `previous_response_id` is a 400).
RESPONSES_STORE = env_bool("RESPONSES_STORE", True)
RESPONSES_RETENTION_DAYS = env_int("RESPONSES_RETENTION_DAYS", 30, minimum=1)
# Seconds a key lookup stays cached in a gateway process (revocations are pushed
# through Redis immediately; this bounds staleness if a message is missed).
KEY_CACHE_SECONDS = env_int("KEY_CACHE_SECONDS", 30, minimum=0)
# Without Redis, each gateway process checks the database's change counter this often, so
# a revocation, suspension or limit edit made by another process applies within ~1 s.
CHANGE_POLL_SECONDS = env_int("CHANGE_POLL_MS", 1000, minimum=50) / 1000
# /metrics answers staff sessions, or `Authorization: Bearer <METRICS_TOKEN>` (Prometheus).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Request records the database cannot take (it is down) are kept here, fsync-ed, until they
# can be written (one set of files per gateway process; keep it on a persistent volume).
SPOOL_DIR = env_str("SPOOL_DIR", str(BASE_DIR / "var" / "spool"))
# On SIGTERM a gateway process lets running requests and streams finish for up to this many
# seconds, then cancels the rest (billed as client cancels), writes every record and exits.
GRACEFUL_SECONDS = env_int("GRACEFUL_SECONDS", 30)
# Running requests renew their reservations every 30 s, so this only bounds how long a dead
# process's holds last.
RESERVATION_SECONDS = env_int("RESERVATION_SECONDS", 300, minimum=90)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # One line per upstream call is noise at thousands of requests per second.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"},
                # failures and lockouts are warnings (usernames and addresses masked); the rest is chatter
                "axes": {"level": "WARNING"}},
}

# --- Portal, accounts and reports (issue 5) -------------------------------------------------

LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Open sign-up (a new user gets their own team); invitations work either way.
SIGNUP_OPEN = env_bool("SIGNUP_OPEN", True)
INVITATION_DAYS = env_int("INVITATION_DAYS", 7, minimum=1)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "TokenHub <tokenhub@localhost>")
TEMPLATES[0]["OPTIONS"]["context_processors"].append("tokenhub_portal.web.context_processors.portal")
CELERY_BEAT_SCHEDULE.update({
    "roll-up-usage": {"task": "billing.tasks.roll_up_usage", "schedule": 60.0},
    "delete-expired-responses": {"task": "billing.tasks.delete_expired_responses", "schedule": 3600.0},
    # The 1st and 2nd: last month is closed by then whatever BILLING_TIME_ZONE is.
    "monthly-statements": {"task": "billing.tasks.generate_monthly_statements",
                           "schedule": crontab(minute=20, hour="*/6", day_of_month="1,2")},
    # Budget alerts a lost task or a broker outage left undelivered.
    "deliver-due-alerts": {"task": "billing.tasks.deliver_due_alerts", "schedule": 30.0},
})

# --- Management API (Django REST framework, issue 12) ----------------------------------------
# Served by Django under each of API_MOUNTS for the paths in tokenhub_portal.web.api.routes;
# everything else under the mounts stays on the lean ASGI router.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tokenhub_portal.web.api.auth.ManagementKeyAuthentication",
        "tokenhub_portal.web.api.auth.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tokenhub_portal.web.api.permissions.IsManager"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "tokenhub_portal.web.api.schema.ManagementSchema",
    "URL_FORMAT_OVERRIDE": None,  # ?format=csv is the statements' own parameter
    "EXCEPTION_HANDLER": "tokenhub_portal.web.api.errors.openai_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "TokenHub management API",
    "DESCRIPTION": (
        "Keys, budgets, usage and statements of TokenHub teams, for CI, Terraform and data warehouses. "
        "Authenticate with a management key (`Authorization: Bearer th-…`, created by "
        "`manage.py issue_key --management` or in the portal); operator keys and staff sessions act on every "
        "team. Money is a decimal string in USD. Writes accept an `Idempotency-Key` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["tokenhub_portal.web.api.schema.primary_mount_only"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"LimitResetEnum": "tokenhub_portal.accounts.models.ApiKey.LimitReset"},
}
# Budget-alert webhooks may not target loopback/private/link-local addresses (SSRF) unless
# this is set (e.g. a receiver on the same host in development).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# Seconds an Idempotency-Key's first answer is replayed.
IDEMPOTENCY_SECONDS = 24 * 3600
