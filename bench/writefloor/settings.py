"""
Settings of the write floor (bench/writefloor): the project's database, nothing else of it.

``DATABASES`` is the project's own (usersite.settings reads DATABASE_URL the
same way: no persistent connections, PostgreSQL's connection pool, SQLite's
WAL and immediate transactions), so the floor pays the same for its
connections. The rest is as bare as Django allows: one app besides DRF, no
middleware, and DRF without authentication, permissions or throttles.
bench/writes.py starts it, and its manage.py calls, with
``DJANGO_SETTINGS_MODULE=bench.writefloor.settings``.
"""

import os

from usersite.settings import DATABASES  # noqa: F401

SECRET_KEY = os.environ.get("SECRET_KEY", "benchmark-only")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["rest_framework", "bench.writefloor"]
MIDDLEWARE = []
ROOT_URLCONF = "bench.writefloor.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": os.environ.get("LOG_LEVEL", "WARNING")},
}
