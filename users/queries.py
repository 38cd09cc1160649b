"""
A live query: which users a client sees, and in what order (docs/protocol.md, "Live queries").

One Query filters and orders both REST's pages (users.api.views) and the socket's
windows (users.live.windows), so both show the same users in the same places.

Its order is one that Python reproduces exactly, so that a window can place a
changed user without asking the database: names compare by their text with
ASCII letters lowercased, code point by code point (PostgreSQL's "C"
collation, SQLite's default), ties by id ascending. A locale's order would
differ between the database and Python, and between databases. The search
(Django's ``icontains`` on the name or the email) is left to the database alone.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import F, Func, Q, QuerySet

ORDERS = ("id", "-id", "name", "-name")
MAX_LIMIT = 500
MAX_OFFSET = 10_000_000
MAX_SEARCH_LENGTH = 100
PARAMETERS = ("search", "order", "limit", "offset")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class InvalidQueryError(ValueError):
    """A query parameter out of range; the message says which and what is allowed."""


class SortName(Func):
    """A name as the ``name`` order compares it: ASCII letters lowercased, by code point."""

    function = "LOWER"

    def __init__(self, expression="name", **extra):
        super().__init__(F(expression) if isinstance(expression, str) else expression, **extra)

    def as_postgresql(self, compiler, connection, **extra):
        # With the "C" collation, PostgreSQL's lower() changes ASCII letters only,
        # as SQLite's does, and the result compares by code point.
        return self.as_sql(compiler, connection, template='LOWER(%(expressions)s COLLATE "C")')


def sort_name(name: str) -> str:
    """Python's SortName."""
    return name.translate(ASCII_LOWER)


@dataclass(frozen=True)
class Query:
    """
    Users whose name or email contains ``search`` (any case), ordered by
    ``order`` with ties by id; with ``limit``, the window of that many from
    place ``offset`` (0 the first).
    """

    search: str = ""
    order: str = "id"
    limit: int | None = None
    offset: int = 0

    @classmethod
    def parse(cls, values: Mapping[str, object]) -> "Query":
        """The query ``values`` name (JSON values or URL strings); else InvalidQueryError."""
        search = values.get("search") or ""
        if not isinstance(search, str) or len(search) > MAX_SEARCH_LENGTH or "\x00" in search:
            raise InvalidQueryError(f"search: text of at most {MAX_SEARCH_LENGTH} characters.")
        order = values.get("order") or "id"
        if order not in ORDERS:
            raise InvalidQueryError(f"order: one of {', '.join(ORDERS)}.")
        limit = _number(values.get("limit"), "limit", 1, MAX_LIMIT)
        offset = _number(values.get("offset"), "offset", 0, MAX_OFFSET) or 0
        if offset and limit is None:
            raise InvalidQueryError("offset: only with a limit.")
        return cls(search, order, limit, offset)

    @classmethod
    def from_url(cls, parameters: Mapping[str, list[str]]) -> "Query | None":
        """The query of a socket URL's parameters (``parse_qs``'s), or None if it names none."""
        named = {name: parameters[name] for name in PARAMETERS if name in parameters}
        if not named:
            return None
        if any(len(values) > 1 for values in named.values()):
            raise InvalidQueryError(f"Give each of {', '.join(PARAMETERS)} at most once.")
        return cls.parse({name: values[0] for name, values in named.items()})

    def matching(self) -> Q:
        """The users this query's search selects."""
        if not self.search:
            return Q()
        return Q(name__icontains=self.search) | Q(email__icontains=self.search)

    @property
    def ordering(self) -> tuple:
        """The ``order_by`` of the matching users, over ``sort_name`` for the name orders."""
        return {
            "id": ("id",),
            "-id": ("-id",),
            "name": ("sort_name", "id"),
            "-name": ("-sort_name", "id"),
        }[self.order]

    def apply(self, users: QuerySet) -> QuerySet:
        """``users`` filtered by the search, in this query's order (the window not cut)."""
        if self.order in ("name", "-name"):
            users = users.annotate(sort_name=SortName())
        return users.filter(self.matching()).order_by(*self.ordering)

    def key(self, user) -> tuple:
        """The order as a Python sort key, for ``order`` id, -id or name (not -name: ``sort``)."""
        if self.order == "id":
            return (user.id,)
        if self.order == "-id":
            return (-user.id,)
        return (sort_name(user.name), user.id)

    def sort(self, users: list) -> None:
        """Sort ``users`` (objects with id and name) in this query's order, in place."""
        if self.order == "-name":
            users.sort(key=_id)
            users.sort(key=lambda user: sort_name(user.name), reverse=True)  # stable: ids stay up
        else:
            users.sort(key=self.key)

    def precedes(self, first, second) -> bool:
        """Whether ``first`` comes before ``second`` in this query's order."""
        if self.order == "-name":
            names = sort_name(first.name), sort_name(second.name)
            return names[0] > names[1] or (names[0] == names[1] and first.id < second.id)
        return self.key(first) < self.key(second)

    def as_parameters(self) -> dict:
        """
        This query as URL parameters: ``order`` always (any of them makes a
        subscription a live query's), the others where not the default.
        """
        given = {"search": self.search, "limit": self.limit, "offset": self.offset}
        defaults = Query()
        return {"order": self.order} | {
            name: value for name, value in given.items() if value != getattr(defaults, name)
        }


def _id(user) -> int:
    return user.id


def _number(value, name: str, lowest: int, highest: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise InvalidQueryError(f"{name}: a whole number from {lowest} to {highest}.")
    return value
