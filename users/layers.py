"""A channel layer that keeps consumers alive through a Redis outage."""

import asyncio
import logging
import random

from channels_redis.core import RedisChannelLayer
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Errors of a Redis server that is down or restarting.
LAYER_ERRORS = (RedisError, OSError)

RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 2.0


class OutageTolerantRedisChannelLayer(RedisChannelLayer):
    """
    channels-redis' core layer whose receive() waits until Redis answers again.

    The base layer raises ConnectionError from receive() while Redis is down;
    that ends the consumer and its socket closes with 1011. Here receive()
    retries with backoff instead, and users.relay restores the group
    membership and the list that a restart wiped. Sends still raise, so a
    publisher can log its failure.
    """

    async def receive(self, channel):
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                return await super().receive(channel)
            except LAYER_ERRORS as exc:
                # redis-py can report the cancellation of a blocking read as a
                # TimeoutError; a consumer that is closing must stop, quietly.
                if asyncio.current_task().cancelling():
                    raise asyncio.CancelledError from exc
                # users.relay reports the outage once per process, not per socket.
                logger.debug("Channel layer receive failed, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, RETRY_MAX_DELAY)
