import pytest
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import SentinelConnectionPool, SentinelManagedSSLConnection

from tests.test_settings import manage
from users import redis_clients
from users.redis_clients import RedisServers, parse_sentinels

SENTINELS = (("10.0.0.1", 26379), ("::1", 26380))


def test_sentinels_are_read_as_host_and_port_pairs():
    parsed = parse_sentinels(["10.0.0.1:26379", "[::1]:26380"])
    assert parsed == list(SENTINELS)


@pytest.mark.parametrize("item", ["10.0.0.1", "10.0.0.1:", ":26379", "host:port"])
def test_a_sentinel_without_a_port_is_refused(item):
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINELS"):
        parse_sentinels([item])


def test_without_sentinels_the_channel_layer_uses_the_url():
    url = "redis://127.0.0.1:6379/2"
    assert RedisServers(url).channel_layer_host() == url


def test_with_sentinels_the_channel_layer_asks_them_for_the_primary():
    host = RedisServers("redis://:secret@ignored/3", SENTINELS, "main").channel_layer_host()
    assert host["sentinels"] == list(SENTINELS)
    assert host["master_name"] == "main"
    assert (host["db"], host["password"]) == (3, "secret")
    assert "host" not in host


def test_with_sentinels_the_cache_is_djangos_redis_cache_on_a_sentinel_pool():
    settings = RedisServers("redis://:secret@ignored/3", SENTINELS, "main").cache()
    cache = RedisCache(settings["LOCATION"], {"OPTIONS": settings["OPTIONS"]})
    pool = cache._cache._get_connection_pool(write=True)  # made without connecting
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "main"
    assert (pool.connection_kwargs["db"], pool.connection_kwargs["password"]) == (3, "secret")


def test_sentinels_without_a_primary_name_are_refused():
    result = manage("check", env={"REDIS_SENTINELS": "127.0.0.1:26379"})
    assert result.returncode != 0
    assert "REDIS_SENTINELS needs REDIS_SENTINEL_MASTER" in result.stderr


@pytest.mark.parametrize("sentinels", [(), SENTINELS])
def test_every_cache_object_of_a_process_shares_one_pool(sentinels):
    """Django makes a cache object per request under ASGI: each must not connect anew."""
    settings = RedisServers("redis://127.0.0.1:1/3", sentinels, "main").cache()
    first, second = (
        RedisCache(settings["LOCATION"], {"OPTIONS": settings["OPTIONS"]}) for _ in range(2)
    )
    pool = first._cache._get_connection_pool(write=True)  # made without connecting
    assert second._cache._get_connection_pool(write=True) is pool


SECURED = RedisServers(
    "rediss://:redis-secret@ignored/3",
    SENTINELS,
    "main",
    sentinel_password="sentinel-secret",
    sentinel_tls=True,
    tls_ca_file="/etc/redis/ca.pem",
)


def test_the_sentinels_are_asked_with_their_own_password_over_tls():
    options = SECURED.sentinel_options()
    assert (options["password"], options["ssl"]) == ("sentinel-secret", True)
    assert options["ssl_ca_certs"] == "/etc/redis/ca.pem"
    assert "password" not in RedisServers("redis://ignored/0", SENTINELS, "main").sentinel_options()


def test_a_rediss_url_reaches_the_primary_the_sentinels_name_over_tls_with_its_password():
    host = SECURED.channel_layer_host()
    assert (host["password"], host["ssl"], host["ssl_ca_certs"]) == (
        "redis-secret",
        True,
        "/etc/redis/ca.pem",
    )
    assert host["sentinel_kwargs"] == SECURED.sentinel_options()


def test_with_a_rediss_url_the_cache_asks_the_sentinels_and_speaks_tls():
    settings = SECURED.cache()
    cache = RedisCache(settings["LOCATION"], {"OPTIONS": settings["OPTIONS"]})
    pool = cache._cache._get_connection_pool(write=True)  # made without connecting
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.connection_class is SentinelManagedSSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/redis/ca.pem"
    assert pool.connection_kwargs["password"] == "redis-secret"


def test_a_single_rediss_server_is_verified_with_the_ca_file_everywhere():
    servers = RedisServers("rediss://:secret@redis.internal:6380/0", tls_ca_file="/ca.pem")
    assert servers.channel_layer_host() == {
        "address": "rediss://:secret@redis.internal:6380/0",
        "ssl_ca_certs": "/ca.pem",
    }
    assert servers.cache()["OPTIONS"]["ssl_ca_certs"] == "/ca.pem"
    assert servers.sync_client().connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"


async def test_the_clients_of_one_process_share_one_pool_that_closing_a_client_keeps(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to here
    first, second = redis_clients.client(), redis_clients.client()
    assert first.connection_pool is second.connection_pool
    await first.aclose()  # as each caller does when done
    assert redis_clients.client().connection_pool is second.connection_pool
