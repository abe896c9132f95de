"""Settings for the portal, read from the environment with safe local defaults.

PORTAL_MODE=production turns on the hardened configuration and refuses to start without
SECRET_KEY and ALLOWED_HOSTS; every other mode is for a developer's machine or the test suite.
"""

from __future__ import annotations

from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env, database_from_url

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

PORTAL_MODE = env.choice("PORTAL_MODE", "development", ("development", "production"))
PRODUCTION = PORTAL_MODE == "production"

if PRODUCTION:
    SECRET_KEY = env.string("SECRET_KEY")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "SECRET_KEY must be at least 50 characters of random text in production"
        )
    ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set in production (comma-separated)")
    DEBUG = False
else:
    # A fixed key is fine on a developer's loopback-only stack; production refuses to use it.
    SECRET_KEY = env.string(
        "SECRET_KEY", "django-insecure-local-development-key-not-for-production"
    )
    ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
    DEBUG = env.boolean("DEBUG", True)

CSRF_TRUSTED_ORIGINS = env.csv("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "tenants",
    "models_registry",
    "deployments",
    "usage",
]

MIDDLEWARE = [
    # First: it times everything below it and answers /metrics before the host check.
    "portal.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

if PRODUCTION:
    # gunicorn serves static files through WhiteNoise; runserver serves them itself.
    MIDDLEWARE.insert(2, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "tenants.context_processors.tenant_navigation",
            ],
        },
    },
]

DATABASES = {
    "default": database_from_url(
        "DATABASE_URL",
        env.url(
            "DATABASE_URL",
            "postgres://portal:portal@127.0.0.1:55432/portal",
            schemes=("postgres", "postgresql"),
        ),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.url("REDIS_URL", "redis://127.0.0.1:56379/0", schemes=("redis", "rediss"))
CACHE_URL = env.url("CACHE_URL", "redis://127.0.0.1:56379/1", schemes=("redis", "rediss"))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "portal",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "portal" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON bodies only: form encodings cannot carry the nested objects (promotion, quota) and
    # nulls the bodies declare, and DRF would silently drop what they cannot carry. The schema
    # then declares application/json alone; other types answer 415 (portal.api.ApiContract).
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "portal.pagination.StandardPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "portal.api.error_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "portal.schema.PortalAutoSchema",
}

# The OpenAPI schema (/api/v1/schema/) and its Swagger UI (/api/v1/docs/), served from our own
# static files (drf-spectacular-sidecar), never a CDN. Signed-in users only; the schema is the
# same for everyone and names no tenant.
SPECTACULAR_SETTINGS = {
    "TITLE": "Inference Portal API",
    "DESCRIPTION": (
        "Tenants, Hugging Face models, GPU tiers and TGI deployments with blue/green rollouts. "
        "Authenticate with `Authorization: Bearer ipt_…` (an API token of one tenant) or a "
        "signed-in session. Every error answers "
        '`{"error": {"status", "code", "message", "fields"}}`.'
    ),
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    # <int:pk> matches digits only: a negative id is no URL of ours (Django's HTML 404).
    "PATH_CONVERTER_OVERRIDES": {"int": {"type": "integer", "minimum": 0}},
    # Choice sets used under several field names get one component each.
    "ENUM_NAME_OVERRIDES": {
        "ColourEnum": "deployments.choices.Colour",
        "PromotionModeEnum": "deployments.choices.PromotionMode",
        "ApiTokenStatusEnum": "tenants.choices.ApiTokenStatus",
        "GatewayKeyStatusEnum": "tenants.choices.GatewayKeyStatus",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "persistAuthorization": False},
}

# Celery: Redis is the broker, PostgreSQL holds every piece of state a task touches.
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT = "portal.broker:Transport"  # kombu's Redis transport + one fix, see there
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # tasks are idempotent, so a re-delivery after a crash is safe
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env.string("CELERY_QUEUE", "portal")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "sweep-expired-api-tokens": {
        "task": "tenants.tasks.sweep_expired_api_tokens",
        "schedule": 300.0,
    },
    "reconcile-rollouts": {
        "task": "deployments.tasks.reconcile_rollouts",
        "schedule": env.number("ROLLOUT_RECONCILE_SECONDS", 10.0, minimum=0.5),
    },
    "recheck-gated-model-access": {
        "task": "models_registry.tasks.recheck_gated_access",
        "schedule": crontab(hour=3, minute=17),  # nightly, off the hour to spread Hub load
    },
    "record-replica-history": {
        "task": "deployments.tasks.record_replica_history",
        "schedule": env.number("REPLICA_HISTORY_SECONDS", 60.0, minimum=1.0),
    },
}

# External systems: the local stack's loopback endpoints by default.
KUBECONFIG = env.string("KUBECONFIG", str(BASE_DIR / "var" / "cluster" / "kubeconfig"))
# How the worker reaches pods for pre-promotion checks: "direct" to pod IPs, or through the API
# server's pod proxy when they are not routable from here (a portal outside the cluster).
POD_NETWORK = env.choice("PORTAL_POD_NETWORK", "auto", ("auto", "direct", "apiserver-proxy"))
HF_ENDPOINT = env.url("HF_ENDPOINT", "http://127.0.0.1:58080", schemes=("http", "https"))
HF_HUB_TIMEOUT_SECONDS = env.number("HF_HUB_TIMEOUT_SECONDS", 10.0, minimum=0.1)
HF_METADATA_CACHE = env.string("HF_METADATA_CACHE", str(BASE_DIR / "var" / "hf-metadata-cache"))
PROMETHEUS_URL = env.url("PROMETHEUS_URL", "http://127.0.0.1:59090", schemes=("http", "https"))

# The OpenAI-compatible gateway (gateway/): the URL tenants' clients use (shown in snippets),
# and the Redis key prefix of its rate limits (tests give each gateway pair its own).
GATEWAY_PUBLIC_URL = env.url(
    "GATEWAY_PUBLIC_URL", "http://127.0.0.1:8080", schemes=("http", "https")
)
GATEWAY_RATELIMIT_PREFIX = env.string("GATEWAY_RATELIMIT_PREFIX", "rl")
# Metrics, guardrails and cost (deployments/metrics.py, alerts.py, cost.py).
GUARDRAIL_HOLD_SECONDS = env.integer("GUARDRAIL_HOLD_SECONDS", 0, minimum=0)  # 0: each rule's
COST_API_INPUT_PRICE_PER_MILLION = env.number("COST_API_INPUT_PRICE_PER_MILLION", 3.0, minimum=0)
COST_API_OUTPUT_PRICE_PER_MILLION = env.number("COST_API_OUTPUT_PRICE_PER_MILLION", 15.0, minimum=0)

# The reconciler's pass is split across this many tasks by tenant (deployments/reconcile.py
# Shard) when one pass over the whole fleet takes too long for ROLLOUT_RECONCILE_SECONDS.
ROLLOUT_RECONCILE_SHARDS = env.integer("ROLLOUT_RECONCILE_SHARDS", 1, minimum=1, maximum=256)
# Rollouts: a worker's claim on a rollout lasts this long (a dead worker's claim expires).
ROLLOUT_CLAIM_SECONDS = env.integer("ROLLOUT_CLAIM_SECONDS", 20, minimum=2, maximum=600)
ROLLOUT_SCALE_DOWN_DELAY_SECONDS = env.integer("ROLLOUT_SCALE_DOWN_DELAY_SECONDS", 30, minimum=0)
ROLLOUT_PROGRESS_DEADLINE_SECONDS = env.integer(
    "ROLLOUT_PROGRESS_DEADLINE_SECONDS", 1800, minimum=30
)
# Fault injection for resilience tests: pause this long after a step's side effects and
# before its state is recorded, in the listed states (empty: never). Off in production.
ROLLOUT_CHAOS_PAUSE_SECONDS = env.number("ROLLOUT_CHAOS_PAUSE_SECONDS", 0.0, minimum=0.0)
ROLLOUT_CHAOS_PAUSE_STATES = env.csv("ROLLOUT_CHAOS_PAUSE_STATES")
if PRODUCTION and ROLLOUT_CHAOS_PAUSE_SECONDS:
    raise ImproperlyConfigured("ROLLOUT_CHAOS_PAUSE_SECONDS is for tests; unset it in production")
# The Hub as the download Jobs reach it (HF_ENDPOINT of the pods); defaults to HF_ENDPOINT.
WEIGHTS_HF_ENDPOINT = env.string("WEIGHTS_HF_ENDPOINT", HF_ENDPOINT)
# Where serving pods find their weights, for tiers that do not choose (Tier.weights_strategy):
# one ReadWriteMany volume per model commit on WEIGHTS_STORAGE_CLASS, a per-pod download
# (node-local), or a ReadWriteOnce volume that attaches to one node only. The shared volume is
# the default when a storage class is configured; the single-node one keeps clusters without
# one working as before. (The values are deployments.rendering.constants.WEIGHTS_STRATEGIES.)
WEIGHTS_STORAGE_CLASS = env.string("WEIGHTS_STORAGE_CLASS", "")
WEIGHTS_STRATEGY = env.choice(
    "WEIGHTS_STRATEGY",
    "shared-volume" if WEIGHTS_STORAGE_CLASS else "single-node-volume",
    ("shared-volume", "node-local", "single-node-volume"),
)
if WEIGHTS_STRATEGY == "shared-volume" and not WEIGHTS_STORAGE_CLASS:
    raise ImproperlyConfigured(
        "WEIGHTS_STRATEGY=shared-volume needs WEIGHTS_STORAGE_CLASS (a ReadWriteMany class)"
    )

API_TOKEN_DEFAULT_DAYS = env.integer("API_TOKEN_DEFAULT_DAYS", 90, minimum=1, maximum=3650)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.string("LOG_LEVEL", "INFO")},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.boolean("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env.integer("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
