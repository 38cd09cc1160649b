"""
Redis clients, built in one place from the settings: the channel layer's host,
the cache, and the clients that the relay, the housekeeper, /healthz and
``checkservices`` talk to Redis with.

Redis is one server (REDIS_URL; ``rediss://`` for TLS) or the primary that
Redis Sentinel names (REDIS_SENTINELS, REDIS_SENTINEL_MASTER; the sentinels'
own REDIS_SENTINEL_PASSWORD and REDIS_SENTINEL_TLS). REDIS_TLS_CA_FILE names
the certificates that signed the servers' when not the system's. With
sentinels every new connection asks them for the current primary, so that all
of these follow a failover the same way. Importable before Django's apps are
loaded: the settings build the channel layer and the cache from here.
"""

import asyncio
import threading
import weakref
from dataclasses import dataclass

import redis.asyncio.sentinel
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

# Seconds to wait for one sentinel's answer before asking the next.
SENTINEL_TIMEOUT = 1.0


def parse_sentinels(items: list[str]) -> list[tuple[str, int]]:
    """Read ``host:port`` items (``[::1]:26379`` for IPv6) into (host, port) pairs."""
    sentinels = []
    for item in items:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_SENTINELS: {item!r} is not host:port.")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


@dataclass(frozen=True)
class RedisServers:
    """Where Redis is and how to reach it, as the REDIS_* settings say."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    sentinel_password: str = ""
    sentinel_tls: bool = False
    tls_ca_file: str = ""

    @classmethod
    def from_settings(cls, settings) -> "RedisServers":
        """Read the REDIS_* settings of ``settings``: django.conf's, or the settings module."""
        return cls(
            url=settings.REDIS_URL,
            sentinels=tuple(settings.REDIS_SENTINELS),
            master=settings.REDIS_SENTINEL_MASTER,
            sentinel_password=settings.REDIS_SENTINEL_PASSWORD,
            sentinel_tls=settings.REDIS_SENTINEL_TLS,
            tls_ca_file=settings.REDIS_TLS_CA_FILE,
        )

    @property
    def tls(self) -> bool:
        """Whether Redis itself speaks TLS: REDIS_URL says ``rediss://``."""
        return self.url.startswith("rediss://")

    def tls_options(self) -> dict:
        """What verifies a server's certificate: REDIS_TLS_CA_FILE, or the system's store."""
        return {"ssl_ca_certs": self.tls_ca_file} if self.tls_ca_file else {}

    def url_options(self) -> dict:
        """Options beside REDIS_URL for a single server: what verifies its TLS, if any."""
        return self.tls_options() if self.tls else {}

    def sentinel_options(self) -> dict:
        """How to talk to the sentinels themselves (redis-py's ``sentinel_kwargs``)."""
        options = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.sentinel_tls:
            options.update(ssl=True, **self.tls_options())
        return options

    def primary_options(self) -> dict:
        """
        The database, credentials and TLS (``rediss://``) of REDIS_URL, for the
        primary the sentinels name: the URL's host is not used.
        """
        options = parse_url(self.url)
        picked = {key: options[key] for key in ("db", "username", "password") if key in options}
        if self.tls:
            # redis-py's Sentinel pools take ``ssl`` to mean their TLS connection class.
            picked.update(ssl=True, **self.tls_options())
        return picked

    def channel_layer_host(self):
        """One entry of channels-redis' ``hosts``: the URL, or its Sentinel form."""
        if not self.sentinels:
            return {"address": self.url, **self.url_options()} if self.url_options() else self.url
        return {
            "sentinels": list(self.sentinels),
            "master_name": self.master,
            "sentinel_kwargs": self.sentinel_options(),
            **self.primary_options(),
        }

    def cache(self) -> dict:
        """
        Django's own RedisCache, on one pool per process (OnePerProcess), on the
        primary the sentinels name if any.

        RedisCache makes its pool with ``pool_class.from_url(LOCATION, **OPTIONS)``;
        redis-py's SentinelConnectionPool takes the database and password from the
        URL and asks the sentinels for the primary's address at each connection.
        """
        settings = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": self.url,
            "OPTIONS": {"pool_class": f"{__name__}.SharedConnectionPool", **self.url_options()},
        }
        if self.sentinels:
            settings["OPTIONS"] = {
                "pool_class": f"{__name__}.SharedSentinelConnectionPool",
                "service_name": self.master,
                "sentinel_manager": redis.sentinel.Sentinel(
                    self.sentinels, sentinel_kwargs=self.sentinel_options()
                ),
            }
            if self.tls:
                # from_url would take the URL's plain SSLConnection, which
                # connects to the URL's host instead of asking the sentinels.
                settings["OPTIONS"].update(
                    connection_class=redis.sentinel.SentinelManagedSSLConnection,
                    **self.tls_options(),
                )
        return settings

    def sync_client(self, **options) -> redis.Redis:
        """A new synchronous client of Redis or the current primary; the caller closes it."""
        if not self.sentinels:
            return redis.Redis.from_url(self.url, **self.url_options(), **options)
        sentinels = redis.sentinel.Sentinel(self.sentinels, sentinel_kwargs=self.sentinel_options())
        return sentinels.master_for(self.master, **self.primary_options(), **options)

    def connection_pool(self) -> redis.asyncio.ConnectionPool:
        """A new asyncio connection pool of Redis or of the primary the sentinels name."""
        if not self.sentinels:
            return redis.asyncio.ConnectionPool.from_url(self.url, **self.url_options())
        sentinels = redis.asyncio.sentinel.Sentinel(
            self.sentinels, sentinel_kwargs=self.sentinel_options()
        )
        return redis.asyncio.sentinel.SentinelConnectionPool(
            self.master, sentinels, **self.primary_options()
        )


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


# This process's asyncio pools, one per event loop (asyncio connections belong
# to the loop that opened them) and per configuration (tests change settings).
_pools: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client() -> redis.asyncio.Redis:
    """
    Return an asyncio client of Redis, as the settings say, on the pool this
    process keeps for the running loop: closing the client hands its
    connection back and keeps the pool, so callers reuse connections.
    """
    from django.conf import settings

    servers = RedisServers.from_settings(settings)
    pools = _pools.setdefault(asyncio.get_running_loop(), {})
    if servers not in pools:
        pools[servers] = servers.connection_pool()
    return redis.asyncio.Redis(connection_pool=pools[servers])
