"""The socket's URL: the client's name for its request ids, and the list it resumes from."""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def with_parameters(url: str, **parameters: str) -> str:
    """Return ``url`` with these query parameters set, its other parameters kept."""
    parts = urlsplit(url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in parameters
    ]
    query += list(parameters.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def resume_url(url: str, epoch: str, version: int) -> str:
    """Return ``url`` asking to resume from ``version`` of ``epoch``, its other parameters kept."""
    return with_parameters(url, epoch=epoch, version=str(version))
