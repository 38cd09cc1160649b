"""
Settings for benchmarking channels-redis' pub/sub layer against the core one.

The production settings offer only the core layer with REDIS_URL (chosen in
docs/performance.md); the pub/sub layer is kept here, for comparison only.
``bench/fanout.py --layer pubsub`` starts the servers, and its manage.py
calls, with ``DJANGO_SETTINGS_MODULE=bench.settings``.
"""

from django.core.exceptions import ImproperlyConfigured

from usersite.settings import *  # noqa: F403
from usersite.settings import REDIS_URL

if not REDIS_URL:
    raise ImproperlyConfigured("bench.settings needs REDIS_URL: it uses the Redis pub/sub layer.")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    }
}
