"""
Where Redis is: one server (REDIS_URL), or the primary that Redis Sentinel names
(REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

The settings build the channel layer's host and the cache from here, and code
that talks to Redis itself (the relay's check, /healthz) takes its client from
``client()``, so all of them follow a failover the same way: each new
connection asks the sentinels for the current primary.
"""

import asyncio
import threading
import weakref

import redis.asyncio.sentinel
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

# Seconds to wait for one sentinel's answer before asking the next.
SENTINEL_TIMEOUT = 1.0
SENTINEL_OPTIONS = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}


def parse_sentinels(items: list[str]) -> list[tuple[str, int]]:
    """Read ``host:port`` items (``[::1]:26379`` for IPv6) into (host, port) pairs."""
    sentinels = []
    for item in items:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_SENTINELS: {item!r} is not host:port.")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def primary_options(url: str) -> dict:
    """The database and credentials of REDIS_URL: with sentinels, its host is not used."""
    options = parse_url(url)
    return {key: options[key] for key in ("db", "username", "password") if key in options}


def channel_layer_host(url: str, sentinels: list, master: str):
    """One entry of channels-redis' ``hosts``: the URL, or its Sentinel form."""
    if not sentinels:
        return url
    return {
        "sentinels": sentinels,
        "master_name": master,
        "sentinel_kwargs": SENTINEL_OPTIONS,
        **primary_options(url),
    }


class OnePerProcess:
    """
    A connection pool made once per process and URL, whoever asks for it.

    Django's caches are per request context, and under ASGI every request has
    one of its own: RedisCache made a new pool for each, and so connected to
    Redis anew (3.6 connections per REST write, measured; docs/performance.md).
    redis-py's pools are thread-safe and start over in a forked child.
    """

    _pools: dict = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options):
        with cls._lock:
            if (cls, url) not in cls._pools:
                cls._pools[cls, url] = super().from_url(url, **options)
            return cls._pools[cls, url]


class SharedConnectionPool(OnePerProcess, redis.ConnectionPool):
    """The cache's pool of a single Redis server."""


class SharedSentinelConnectionPool(OnePerProcess, redis.sentinel.SentinelConnectionPool):
    """The cache's pool of the primary the sentinels name, asked at each connection."""


def cache(url: str, sentinels: list, master: str) -> dict:
    """
    Django's own RedisCache, on one pool per process (OnePerProcess), on the
    primary the sentinels name if any.

    RedisCache makes its pool with ``pool_class.from_url(LOCATION, **OPTIONS)``;
    redis-py's SentinelConnectionPool takes the database and password from the
    URL and asks the sentinels for the primary's address at each connection.
    """
    settings = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": url,
        "OPTIONS": {"pool_class": f"{__name__}.SharedConnectionPool"},
    }
    if sentinels:
        manager = redis.sentinel.Sentinel(sentinels, sentinel_kwargs=SENTINEL_OPTIONS)
        settings["OPTIONS"] = {
            "pool_class": f"{__name__}.SharedSentinelConnectionPool",
            "service_name": master,
            "sentinel_manager": manager,
        }
    return settings


# One Sentinel (and its connections to the sentinels) per event loop: asyncio
# connections belong to the loop that opened them.
_sentinels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client() -> redis.asyncio.Redis:
    """Return a new asyncio client of the current primary; the caller closes it."""
    from django.conf import settings

    if not settings.REDIS_SENTINELS:
        return redis.asyncio.from_url(settings.REDIS_URL)
    loop = asyncio.get_running_loop()
    if loop not in _sentinels:
        _sentinels[loop] = redis.asyncio.sentinel.Sentinel(
            settings.REDIS_SENTINELS, sentinel_kwargs=SENTINEL_OPTIONS
        )
    return _sentinels[loop].master_for(
        settings.REDIS_SENTINEL_MASTER, **primary_options(settings.REDIS_URL)
    )
