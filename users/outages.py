"""
Outages of the services a server process depends on, logged once each.

A relay retries a database or a Redis that is down many times a second; a
line (and a traceback) per attempt buried what mattered in the logs. An
Outage logs a warning when a service first fails and another when it works
again, whatever the number of attempts in between.
"""

import logging

from django.db import InterfaceError, OperationalError

# What a database that is down, restarting or cut off raises (a lost connection,
# a pool with none to give, a deadlock or a cancelled statement).
DATABASE_UNREACHABLE = (OperationalError, InterfaceError)


def cause(exc: BaseException) -> str:
    """Why ``exc`` happened, on one log line (PostgreSQL's messages span several)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class Outage:
    """Whether a service is down for one job: log ``went_down`` and ``came_back`` once each."""

    def __init__(self, logger: logging.Logger, went_down: str, came_back: str):
        self.logger, self.went_down, self.came_back = logger, went_down, came_back
        self.down = False

    def failed(self, exc: BaseException) -> None:
        """Note a failed attempt; the first of an outage is logged, with its cause."""
        if not self.down:
            self.down = True
            self.logger.warning("%s (%s)", self.went_down, cause(exc))

    def worked(self) -> None:
        """Note a successful attempt; the first after an outage is logged."""
        if self.down:
            self.down = False
            self.logger.warning("%s", self.came_back)
