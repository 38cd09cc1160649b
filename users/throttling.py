"""How fast one client may write: REST per user or address, the socket per connection."""

import logging
import time

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import UserRateThrottle

from . import metrics
from .relay import LAYER_ERRORS

logger = logging.getLogger(__name__)


class WriteRateThrottle(UserRateThrottle):
    """
    DRF's per-user throttle (per address when anonymous), for writes only.

    Reads are not counted: they change nothing and the list is one query.
    Counts live in the default cache, shared by every process when it is Redis.
    While Redis is down, writes go unthrottled rather than fail: writes must
    outlive a Redis outage (docs/security.md).
    """

    scope = "users_write"

    def get_rate(self):
        # Read per request, not from DRF's settings at import, so it can be changed.
        return settings.USERS_REST_WRITE_RATE

    def allow_request(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        try:
            allowed = super().allow_request(request, view)
        except LAYER_ERRORS as exc:  # the cache's Redis is down
            logger.warning("Write throttle unavailable, letting the write through: %s", exc)
            return True
        if not allowed:
            metrics.RATE_LIMITED.labels(via="rest").inc()
        return allowed


class TokenBucket:
    """
    Allow ``burst`` actions at once, refilled at ``rate`` per second.

    One per socket, so it needs no shared store: a client that opens more
    sockets is bounded by the server's connection limits instead.
    """

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        """Spend one token if there is one; return whether there was."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
