"""
Settings for usersite.

Everything a deployment changes is read from the environment; the defaults are
for development: SQLite in the project folder and the in-memory channel layer,
so that ``python manage.py runserver`` works with nothing else installed.
README.md documents each variable.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

# Not a model in it: importable before the apps are loaded.
from users import redis_clients

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a yes/no variable: 1, true, yes and on (any case) mean yes."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    """Read a comma-separated variable, ignoring blanks around items."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core --------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether an ALLOWED_HOSTS entry names only this machine."""
    return host in {"localhost", "::1", "[::1]"} or host.startswith("127.")


DEBUG = env_bool("DEBUG", True)
# DEBUG's default (on) also lets anyone write and read: a deployment that names
# a public host must choose it, or forgetting DEBUG=false opens the list to all.
if "DEBUG" not in os.environ and not all(
    is_loopback(host) for host in env_list("ALLOWED_HOSTS", "localhost")
):
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS names a host other than this machine: set DEBUG=false for a "
        "deployment (or DEBUG=true to develop with it on); README.md, Production."
    )
if DEBUG:
    SECRET_KEY = os.environ.get("SECRET_KEY", "django-insecure-development-key-do-not-deploy")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
else:
    # Refuse to start rather than sign sessions with a published key, or answer
    # for any Host (and accept sockets from any Origin, which follows it).
    SECRET_KEY = os.environ.get("SECRET_KEY", "")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "")
    for name, value in (("SECRET_KEY", SECRET_KEY), ("ALLOWED_HOSTS", ALLOWED_HOSTS)):
        if not value:
            raise ImproperlyConfigured(f"{name} must be set when DEBUG is off (README.md).")

INSTALLED_APPS = [
    # The project first: its runserver (daphne's, sending lists of any size) overrides daphne's.
    "usersite",
    "users",
    # daphne before staticfiles: its runserver serves HTTP and WebSockets (daphne.E001).
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # app clients' tokens, kept in the database
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally: no CDN
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the page's script, the admin's, Swagger UI's) under any ASGI
    # server: WhiteNoise, its files read as ASGI wants them (its docstring).
    "usersite.middleware.AsyncFileWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: the whole chain above then runs sync, in one thread (its docstring).
    "usersite.middleware.one_thread_for_the_chain",
]

# --- HTTPS -------------------------------------------------------------------

# On when DEBUG is off: the site is served over HTTPS, by itself or by a proxy
# that terminates TLS. Plain-HTTP deployments (and tests) say HTTPS=false.
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Load balancers probe, and Prometheus scrapes each process, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets the header itself, dropping any client's.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

ROOT_URLCONF = "usersite.urls"
ASGI_APPLICATION = "usersite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Database ----------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        # Persistent connections leak under ASGI (daphne #332, channels #871).
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer (synchronous=NORMAL is its usual
    # pairing: no fsync per commit); IMMEDIATE takes the write lock at BEGIN, so
    # concurrent writers queue instead of failing with "database is locked", and
    # a queue of 200 concurrent REST writers (tests/e2e/test_burst.py) outlasted
    # the default 5-second wait.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool, since every ASGI request opens its own connection.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 2, "max_size": int(os.environ.get("DATABASE_POOL_SIZE", 20))}
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer -----------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
# Redis Sentinel: the sentinels name the primary, and follow it through a
# failover (users.redis_clients); REDIS_URL then gives only its database,
# password and TLS (rediss://).
REDIS_SENTINELS = redis_clients.parse_sentinels(env_list("REDIS_SENTINELS", ""))
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "")
# The sentinels' own password (their requirepass; Redis' is REDIS_URL's), and
# whether they speak TLS (Redis does when REDIS_URL says rediss://).
REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD", "")
REDIS_SENTINEL_TLS = env_bool("REDIS_SENTINEL_TLS", False)
# The CA certificates that signed Redis' and the sentinels' (PEM), if not the system's.
REDIS_TLS_CA_FILE = os.environ.get("REDIS_TLS_CA_FILE", "")
if REDIS_SENTINELS:
    if not REDIS_SENTINEL_MASTER:
        raise ImproperlyConfigured("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (README.md).")
    REDIS_URL = REDIS_URL or f"redis://{REDIS_SENTINEL_MASTER}/0"
# How long a group membership lasts unless renewed; the users app renews its
# membership well before (users.live.member).
CHANNEL_GROUP_EXPIRY = int(os.environ.get("CHANNEL_GROUP_EXPIRY", 86400))
# The REDIS_* settings above, read as the running code reads them from django.conf.
_redis_servers = redis_clients.RedisServers.from_settings(sys.modules[__name__])
if REDIS_URL:
    # channels-redis' core layer (docs/performance.md says why not pub/sub).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_servers.channel_layer_host()],
                "group_expiry": CHANNEL_GROUP_EXPIRY,
            },
        }
    }
else:
    # One process only: fine for runserver, not for several server processes.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"group_expiry": CHANNEL_GROUP_EXPIRY},
        }
    }

# The cache holds the REST write throttle's counts: in Redis when there is one,
# so that every server process counts the same client together.
if REDIS_URL:
    CACHES = {"default": _redis_servers.cache()}

# --- REST API ----------------------------------------------------------------

REST_FRAMEWORK = {
    # Apps send "Authorization: Token <key>"; browsers use the admin's session.
    # Token first, so that a refused anonymous write is a 401 naming the scheme.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # The throttle counts anonymous writers by the connection's address, never
    # by X-Forwarded-For as DRF does by default: anyone can send that header.
    # Behind a proxy named in FORWARDED_ALLOW_IPS, uvicorn gives the connection
    # the address of the proxy's client instead (servers.py).
    "NUM_PROXIES": 0,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A database that is down answers 503 with Retry-After, not 500.
    "EXCEPTION_HANDLER": "users.api.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "usersite API",
    "DESCRIPTION": (
        "The users list. Its live WebSocket, `/api/v1/users/ws` (protocols v1 and v2), is "
        "described in [AsyncAPI 3](/api/asyncapi.yaml) and, with example sessions, in "
        "docs/protocol.md."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",  # drf-spectacular's default
        "users.api.errors.document_database_unavailable",
    ],
}

# --- The users app -----------------------------------------------------------

# Anyone may read the list (REST, the socket, the page), as the Dart example's
# clients need, which send no credentials; off, readers need a login or a token.
USERS_ANONYMOUS_READS = env_bool("USERS_ANONYMOUS_READS", DEBUG)

# Anyone may create, edit and delete users through REST and the socket, as in
# the Dart example; off, writers need a login with the model's permissions.
USERS_ANONYMOUS_WRITES = env_bool("USERS_ANONYMOUS_WRITES", DEBUG)

# A socket whose client has not taken a list for this many seconds is closed;
# until then it is only ever sent the newest list (users.sockets.consumers).
USERS_SLOW_CLIENT_TIMEOUT = float(os.environ.get("USERS_SLOW_CLIENT_TIMEOUT", 10))

# How long, at least, protocol v2 clients can resume from a version they hold
# and retry a write with the same request id (users.live.history).
USERS_HISTORY_SECONDS = int(os.environ.get("USERS_HISTORY_SECONDS", 3600))

# What one client may write (users.throttling): through REST, this many writes
# per user, or per address when anonymous; over a socket, frames up to this many
# characters (the server's own cap, uvicorn's --ws-max-size, stays the outer
# bound) and creates at this rate per second, in bursts up to this many.
USERS_REST_WRITE_RATE = os.environ.get("USERS_REST_WRITE_RATE", "10/s")  # DRF's rate format
# Anonymous reads of the REST list, per address (users.throttling): a read may be
# every user. Logged-in readers and tokens are not limited.
USERS_REST_ANONYMOUS_READ_RATE = os.environ.get("USERS_REST_ANONYMOUS_READ_RATE", "60/min")
USERS_MAX_FRAME_LENGTH = int(os.environ.get("USERS_MAX_FRAME_LENGTH", 65536))
USERS_SOCKET_CREATE_RATE = float(os.environ.get("USERS_SOCKET_CREATE_RATE", 5))
USERS_SOCKET_CREATE_BURST = int(os.environ.get("USERS_SOCKET_CREATE_BURST", 20))
# Live query changes per socket (each reads a window): a page sends one per
# search keystroke or scroll stop.
USERS_SOCKET_QUERY_RATE = float(os.environ.get("USERS_SOCKET_QUERY_RATE", 10))
USERS_SOCKET_QUERY_BURST = int(os.environ.get("USERS_SOCKET_QUERY_BURST", 30))

# --- Metrics -----------------------------------------------------------------

# GET /metrics (Prometheus' text format, users.metrics) answers only requests
# from these addresses or networks, or with "Authorization: Bearer <METRICS_TOKEN>";
# others get 404. None by default: behind a proxy on the same host every public
# request comes from loopback, so even "loopback only" would publish them.
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", "")
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Auth, i18n, static files --------------------------------------------------

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

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# The page imports the JavaScript client from where it is published
# (clients/js/src, at static/usersite-client/), not from a copy that could drift.
STATICFILES_DIRS = [("usersite-client", BASE_DIR / "clients" / "js" / "src")]
# Without collectstatic (development, tests), serve from the apps' own folders.
WHITENOISE_USE_FINDERS = DEBUG

# --- Logging -----------------------------------------------------------------

# One JSON object per line on stdout when DEBUG is off, for a log collector;
# plain text for a developer's terminal otherwise. LOG_FORMAT=json|text decides.
# LOG_LEVEL holds for Django's and uvicorn's loggers too: at INFO uvicorn logs
# two lines per socket opened, which at WARNING a reconnect storm does not pay for.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "usersite.log_format.JsonLinesFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": os.environ.get("LOG_FORMAT", "text" if DEBUG else "json"),
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    # Django and uvicorn give their loggers handlers of their own; let them
    # propagate to the root instead, so every line has the one format.
    "loggers": {
        **{
            name: {"handlers": [], "level": LOG_LEVEL, "propagate": True}
            for name in ("django", "uvicorn", "uvicorn.error")
        },
        # No access log: the proxy in front keeps one (deploy/nginx.conf). A
        # logger with no handler up its chain also turns uvicorn's access logging
        # off altogether, as --no-access-log means; propagating it to the root
        # brought every request's line back.
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}
