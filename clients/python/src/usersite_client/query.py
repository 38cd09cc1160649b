"""
A live query: which window of the list a LiveUsers follows, and in what order.

docs/protocol.md, "Live queries", is the contract. The client orders the
window itself after each change set, so its order must be the server's
exactly: names with ASCII letters lowercased, then by code point (not a
locale's order), ties by integer id ascending whichever way the names go.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import InvalidQueryError

ORDERS = ("id", "-id", "name", "-name")
MAX_LIMIT = 500
MAX_SEARCH_LENGTH = 100
PARAMETERS = ("search", "order", "limit", "offset")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Query:
    """
    Users whose name or email contains ``search`` (any case), ordered by
    ``order``; with ``limit``, only that many from place ``offset`` (0 the first).

    The defaults follow the whole list, as a client without a query does.
    """

    search: str = ""
    order: str = "id"
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        # The server's limits, checked here so that a mistake fails at the call
        # that made it rather than as an error frame later.
        if not isinstance(self.search, str) or len(self.search) > MAX_SEARCH_LENGTH:
            raise InvalidQueryError(f"search: text of at most {MAX_SEARCH_LENGTH} characters.")
        if "\x00" in self.search:
            raise InvalidQueryError("search: text without NUL characters.")
        if self.order not in ORDERS:
            raise InvalidQueryError(f"order: one of {', '.join(ORDERS)}, not {self.order!r}.")
        if self.limit is not None and not _whole_number(self.limit, 1, MAX_LIMIT):
            raise InvalidQueryError(f"limit: a whole number from 1 to {MAX_LIMIT}, or None.")
        if not _whole_number(self.offset, 0):
            raise InvalidQueryError("offset: a whole number from 0.")
        if self.offset and self.limit is None:
            raise InvalidQueryError("offset: only with a limit.")

    @classmethod
    def from_frame(cls, values: Any) -> "Query":
        """The query an ``ack`` frame's ``query`` names; InvalidQueryError if it is not one."""
        if not isinstance(values, Mapping) or not set(values) <= set(PARAMETERS):
            raise InvalidQueryError(f"{values!r} is not a query.")
        return cls(**values)

    def parameters(self) -> dict[str, str | None]:
        """This query as URL parameters: None for each left at its default, to leave it out."""
        defaults = asdict(Query())
        return {
            name: None if value == defaults[name] else str(value)
            for name, value in asdict(self).items()
        }

    def command(self) -> dict[str, Any]:
        """The ``query`` action that asks the server for this window."""
        fields = {name: value for name, value in asdict(self).items() if value is not None}
        return {"action": "query", **fields}

    def sort(self, users: Iterable[dict[str, str]]) -> list[dict[str, str]]:
        """Return ``users`` in this query's order."""
        by_id = sorted(users, key=_integer_id)
        if self.order == "id":
            return by_id
        if self.order == "-id":
            return by_id[::-1]
        # A stable sort, reversed or not, keeps users of one name in id order, ascending.
        return sorted(by_id, key=_sort_name, reverse=self.order == "-name")


def _integer_id(user: dict[str, str]) -> int:
    return int(user["id"])


def _sort_name(user: dict[str, str]) -> str:
    return user["name"].translate(ASCII_LOWER)


def _whole_number(value: object, lowest: int, highest: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= highest


# What a client without a query follows (defined last: Query's checks use the helpers above).
WHOLE_LIST = Query()
