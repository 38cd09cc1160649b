"""Log records as JSON lines: what log collectors parse without a pattern."""

import json
import logging
from datetime import UTC, datetime


class JsonLinesFormatter(logging.Formatter):
    """
    Format a record as one JSON object on one line.

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, and
    ``exception`` with the traceback when there is one; a traceback's newlines
    stay inside the JSON string, so a record is always exactly one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
