"""The socket's URL for resuming from a list the client holds."""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

RESUME_PARAMETERS = ("epoch", "version")


def resume_url(url: str, epoch: str, version: int) -> str:
    """Return ``url`` asking to resume from ``version`` of ``epoch``, its other parameters kept."""
    parts = urlsplit(url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in RESUME_PARAMETERS
    ]
    query += [("epoch", epoch), ("version", str(version))]
    return urlunsplit(parts._replace(query=urlencode(query)))
