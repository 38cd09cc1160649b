"""
What this process tells Prometheus (``GET /metrics``, users.api.views.metrics).

Every metric of the users app is defined here; the relay, the consumers and the
throttle only count. Each server process has its own registry and serves its
own numbers, so a scraper takes one target per process (README.md).
"""

import functools
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

# From a millisecond to ten seconds: a publish or a fan-out is milliseconds
# when well, seconds when Redis or the database struggle.
DELAY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

FRAMES_SENT = Counter(
    "usersite_frames_sent_total",
    "List frames handed to clients: v1 lists, v2 snapshots and change sets.",
    ["protocol", "kind"],
)
PUBLISH_DELAY = Histogram(
    "usersite_publish_delay_seconds",
    "From a commit to the announcement of its version (the oldest commit a publish covers).",
    buckets=DELAY_BUCKETS,
)
PUBLISH_FAILURES = Counter(
    "usersite_publish_failures_total",
    "Publishes that could not reach the channel layer (the relays' checks catch up later).",
)
FANOUT_DURATION = Histogram(
    "usersite_fanout_duration_seconds",
    "One relay refresh: reading the list and offering every stale socket its frame.",
    buckets=DELAY_BUCKETS,
)
SLOW_CLIENTS_DROPPED = Counter(
    "usersite_slow_clients_dropped_total",
    "Sockets ended because a send waited USERS_SLOW_CLIENT_TIMEOUT seconds for the client.",
)
RELAY_REJOINS = Counter(
    "usersite_relay_rejoins_total",
    "Times the relay joined the users group again after its first join (outage, Redis restart "
    "or failover, a failed task).",
)
RELAY_CATCH_UPS = Counter(
    "usersite_relay_catch_ups_total",
    "Refreshes started by the relay's check rather than an announcement: a version that went "
    "missing, or sockets a failed refresh left behind.",
    ["reason"],
)
ERROR_FRAMES = Counter(
    "usersite_error_frames_total", "Error frames sent to socket clients.", ["code"]
)
RATE_LIMITED = Counter(
    "usersite_rate_limited_total",
    "Requests refused for their rate: REST writes (rest) and anonymous reads (rest_read), "
    "429; the socket's creates (socket, rate_limited).",
    ["via"],
)


@functools.cache
def _frames_sent(protocol: int, kind: str):
    # The labelled child, looked up once: this runs for every socket of every fan-out.
    return FRAMES_SENT.labels(protocol=str(protocol), kind=kind)


def frame_sent(protocol: int, kind: str) -> None:
    """Count a frame handed to a client."""
    _frames_sent(protocol, kind).inc()


class PublishClock:
    """The time of the oldest commit that no publish has covered yet (one per process)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.oldest: float | None = None

    def committed(self) -> None:
        """Note a commit, from its writer's thread."""
        with self.lock:
            if self.oldest is None:
                self.oldest = time.monotonic()

    def take(self) -> float | None:
        """Return the oldest uncovered commit's time and forget it: a publish covers it."""
        with self.lock:
            oldest, self.oldest = self.oldest, None
        return oldest

    @staticmethod
    def published(committed_at: float | None) -> None:
        if committed_at is not None:
            PUBLISH_DELAY.observe(time.monotonic() - committed_at)


publish_clock = PublishClock()


class OpenSockets:
    """The gauge of open sockets by protocol, counted at each scrape from the relay's own set."""

    def __init__(self):
        self.protocols: Callable[[], Iterable[int]] = tuple

    def count_from(self, protocols: Callable[[], Iterable[int]]) -> None:
        """Count the sockets whose protocols ``protocols()`` returns (the relay registers it)."""
        self.protocols = protocols

    @staticmethod
    def family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "usersite_open_sockets",
            "Sockets registered with this process's relay, by protocol.",
            labels=["protocol"],
        )

    def describe(self):
        yield self.family()

    def collect(self):
        gauge = self.family()
        counts = {1: 0, 2: 0}
        for protocol in self.protocols():
            counts[protocol] += 1
        for protocol, count in counts.items():
            gauge.add_metric([str(protocol)], count)
        yield gauge


OPEN_SOCKETS = OpenSockets()
REGISTRY.register(OPEN_SOCKETS)
