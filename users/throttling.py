"""How fast one client may write (REST per user or address, the socket per connection) or read."""

import logging
import time

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from . import metrics
from .live.supervision import LAYER_ERRORS

logger = logging.getLogger(__name__)


class RestThrottle:
    """
    A DRF throttle for the requests of ``methods`` (``what`` they are), at the
    rate that the setting named ``rate_setting`` holds; its 429s are counted as
    ``via`` (users.metrics).

    Counts live in the default cache, shared by every process when it is Redis.
    While Redis is down, requests go unthrottled rather than fail: writes must
    outlive a Redis outage (docs/security.md), and so must reads.
    """

    rate_setting: str
    methods: frozenset
    what: str
    via: str

    def get_rate(self):
        # Read per request, not from DRF's settings at import, so it can be changed.
        return getattr(settings, self.rate_setting)

    def allow_request(self, request, view):
        if request.method not in self.methods:
            return True
        try:
            allowed = super().allow_request(request, view)
        except LAYER_ERRORS as exc:  # the cache's Redis is down
            logger.warning(
                "%s throttle unavailable, letting the %s through: %s",
                self.what.title(),
                self.what,
                exc,
            )
            return True
        if not allowed:
            metrics.RATE_LIMITED.labels(via=self.via).inc()
        return allowed


class WriteRateThrottle(RestThrottle, UserRateThrottle):
    """Writes, per user (per address when anonymous); reads change nothing."""

    scope = "users_write"
    rate_setting = "USERS_REST_WRITE_RATE"
    methods = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    what = "write"
    via = "rest"


class AnonymousReadRateThrottle(RestThrottle, AnonRateThrottle):
    """
    Anonymous reads, per address: the list may be every user. Logged-in
    readers and apps with a token are not counted.
    """

    scope = "users_anonymous_read"
    rate_setting = "USERS_REST_ANONYMOUS_READ_RATE"
    methods = frozenset(SAFE_METHODS)
    what = "read"
    via = "rest_read"


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
