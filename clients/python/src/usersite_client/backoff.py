"""How long to wait before trying again."""

import random
from collections.abc import Callable


class Backoff:
    """
    Delays that double from ``first`` up to ``cap``, each shortened by a random part.

    The random part (up to half the delay) keeps clients that lost the same
    server at the same moment from all coming back at the same moment.
    """

    def __init__(
        self, first: float = 0.5, cap: float = 30.0, *, random: Callable[[], float] = random.random
    ):
        self.first, self.cap, self.random = first, cap, random
        self.failures = 0

    def next_delay(self) -> float:
        """Return the delay before the next attempt, and lengthen the one after."""
        delay = min(self.cap, self.first * 2**self.failures)
        if delay < self.cap:  # past the cap, 2**failures would only grow towards an overflow
            self.failures += 1
        return delay * (1 - self.random() / 2)

    def reset(self) -> None:
        """Start again from ``first``: the last attempt worked."""
        self.failures = 0
