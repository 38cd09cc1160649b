"""
REST answers for failures that are not the client's.

A database that is down or restarting is a 503 with Retry-After and one
warning line, not a 500 with a traceback: the client may try again, a write
with the same Idempotency-Key at most once (users.commands).
"""

import logging

from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler

from ..outages import DATABASE_UNREACHABLE, cause

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1


class DatabaseUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = (
        "The database is unavailable; try again. A write may have been made: "
        "resend it with the same Idempotency-Key to have it made at most once."
    )
    default_code = "unavailable"


def exception_handler(exc, context):
    """DRF's handler, which also answers a database that cannot be reached (503)."""
    if not isinstance(exc, DATABASE_UNREACHABLE):
        return drf_exception_handler(exc, context)
    logger.warning("A REST request met a database failure: %s", cause(exc))
    response = drf_exception_handler(DatabaseUnavailable(), context)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def document_database_unavailable(result, generator, request, public):
    """
    A drf-spectacular postprocessing hook: every operation may answer 503 with
    Retry-After (``exception_handler``), which a generated client should know.
    """
    unavailable = {
        "description": "The database is unavailable; try again after Retry-After seconds.",
        "headers": {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        },
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string"}},
                    "required": ["detail"],
                }
            }
        },
    }
    for operations in result["paths"].values():
        for operation in operations.values():
            operation["responses"].setdefault("503", unavailable)
    return result
