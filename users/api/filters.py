"""
The REST list's query: ``search``, ``order`` and ``limit`` as the socket reads them (users.queries).
"""

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.filters import BaseFilterBackend

from ..queries import MAX_SEARCH_LENGTH, ORDERS, InvalidQueryError, Query

# Any of these asks for a page (users.api.pagination); without them the list is every user.
LIST_PARAMETERS = ("search", "order", "limit", "cursor")


class InvalidQuery(APIException):
    """400 ``{"detail": "<which parameter, what is allowed>"}``: the socket's invalid_query."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_query"


def query_of(request) -> Query | None:
    """The query a list request names; None when it names none of LIST_PARAMETERS."""
    parameters = request.query_params
    if not any(name in parameters for name in LIST_PARAMETERS):
        return None
    if "offset" in parameters:
        raise InvalidQuery("offset: REST pages go on with their next link, not an offset.")
    try:
        return Query.from_url(dict(parameters.lists())) or Query()
    except InvalidQueryError as exc:
        raise InvalidQuery(str(exc)) from None


class QueryFilter(BaseFilterBackend):
    """The users a request's query selects, in its order (``get_ordering``, for the pagination)."""

    def filter_queryset(self, request, queryset, view):
        return (query_of(request) or Query()).apply(queryset)

    def get_ordering(self, request, queryset, view):
        return (query_of(request) or Query()).ordering

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "search",
                "required": False,
                "in": "query",
                "description": "Users whose name or email contains this text, in any case.",
                "schema": {"type": "string", "maxLength": MAX_SEARCH_LENGTH},
            },
            {
                "name": "order",
                "required": False,
                "in": "query",
                "description": (
                    "`name` compares names with ASCII letters lowercased, then by code point; "
                    "ties are broken by id, ascending (default `id`)."
                ),
                "schema": {"type": "string", "enum": list(ORDERS)},
            },
        ]
