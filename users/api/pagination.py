"""The REST list's answer: every user, or a page of a query with DRF's cursor pagination."""

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from ..models import parse_user_id
from ..queries import MAX_LIMIT, MAX_OFFSET
from .filters import InvalidQuery, query_of


class QueryPagination(CursorPagination):
    """
    ``{"users": [...], "total": <matching users>, "next": <URL or null>}`` for a
    request that names a query (users.api.filters.LIST_PARAMETERS), its order from
    QueryFilter.get_ordering; ``{"users": [every user, by id]}`` for one that
    names none, as the seed's clients read it.
    """

    page_size = 100  # a query without a limit
    page_size_query_param = "limit"
    page_size_query_description = f"Users per page, 1 to {MAX_LIMIT} (default {page_size})."
    max_page_size = MAX_LIMIT
    cursor_query_description = "The `next` link's cursor: the page after the one it came with."
    invalid_cursor_message = "cursor: not one from a next link of this order; start without it."
    # Not DRF's 1000: it capped the offset into a run of equal names, so next looped past it.
    offset_cutoff = MAX_OFFSET

    def paginate_queryset(self, queryset, request, view=None):
        self.paged = query_of(request) is not None
        if not self.paged:
            return list(queryset)
        self.total = queryset.count()
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        if not self.paged:
            return Response({"users": data})
        return Response({"users": data, "total": self.total, "next": self.get_next_link()})

    def decode_cursor(self, request):
        """DRF's cursor, but 400 naming ``cursor`` (not 404) for one that no next link holds."""
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise InvalidQuery(self.invalid_cursor_message) from None
        if cursor is None or cursor.position is None:
            return cursor
        position = self.position(cursor.position)
        if position is None:
            raise InvalidQuery(self.invalid_cursor_message)
        return cursor._replace(position=position)

    def position(self, text: str) -> str | None:
        """``text`` as a value of the order's first field (an id, a name); None if it is none."""
        if self.ordering[0].lstrip("-") == "id":
            user_id = parse_user_id(text)  # never int() of thousands of digits
            return None if user_id is None else str(user_id)
        return None if "\x00" in text else text  # PostgreSQL's text cannot hold one

    def get_schema_operation_parameters(self, view):
        cursor, limit = super().get_schema_operation_parameters(view)
        limit["schema"].update(minimum=1, maximum=MAX_LIMIT)
        return [cursor, limit]

    def get_paginated_response_schema(self, schema):
        return {
            "oneOf": [
                {
                    "type": "object",
                    "description": "Without search, order, limit or cursor: every user, by id.",
                    "properties": {"users": schema},
                    "required": ["users"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "description": "With any of them: the page.",
                    "properties": {
                        "users": schema,
                        "total": {
                            "type": "integer",
                            "description": "How many users match the search, on every page.",
                        },
                        "next": {
                            "type": "string",
                            "format": "uri",
                            "nullable": True,
                            "description": "The next page; null on the last.",
                        },
                    },
                    "required": ["users", "total", "next"],
                },
            ]
        }
