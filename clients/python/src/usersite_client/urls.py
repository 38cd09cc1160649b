"""The socket's URL: the client's name for its request ids, its query, and where it resumes."""

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def with_parameters(url: str, **parameters: str | None) -> str:
    """Return ``url`` with these query parameters set (None: left out), its others kept."""
    parts = urlsplit(url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in parameters
    ]
    query += [(name, value) for name, value in parameters.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def parameter_names(url: str) -> set[str]:
    """Return the names of ``url``'s query parameters."""
    return {name for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}


def resume_url(url: str, epoch: str, version: int) -> str:
    """Return ``url`` asking to resume from ``version`` of ``epoch``, its other parameters kept."""
    return with_parameters(url, epoch=epoch, version=str(version))
