"""Static files through WhiteNoise, their content read as an async iterator under ASGI."""

import os
import warnings
from contextlib import suppress

from django.test import RequestFactory

from servers import ROOT
from usersite.middleware import AsyncFileWhiteNoiseMiddleware

SCRIPT = ROOT / "users" / "static" / "users" / "live-list.js"


def open_files() -> set[str]:
    """The paths of the files this process holds open (Linux's /proc)."""
    folder = "/proc/self/fd"
    paths = set()
    for fd in os.listdir(folder):
        with suppress(OSError):  # the listing's own descriptor, closed since
            paths.add(os.readlink(f"{folder}/{fd}"))
    return paths


def not_static(request):
    raise AssertionError(f"{request.path} was not served as a static file")


async def test_a_static_file_streams_asynchronously_without_a_warning_and_closes_its_file():
    serve = AsyncFileWhiteNoiseMiddleware(not_static)
    response = serve(RequestFactory().get("/static/users/live-list.js"))
    assert response.is_async
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django's sync-iterator warning would raise
        content = b"".join([part async for part in response])
    assert content == SCRIPT.read_bytes()
    assert int(response["Content-Length"]) == len(content)
    assert str(SCRIPT.resolve()) in open_files()
    response.close()  # as the ASGI handler does once it has sent the body
    assert str(SCRIPT.resolve()) not in open_files()


def test_a_head_request_gets_the_headers_and_no_body():
    response = AsyncFileWhiteNoiseMiddleware(not_static)(
        RequestFactory().head("/static/users/live-list.js")
    )
    assert response.status_code == 200
    assert int(response["Content-Length"]) == SCRIPT.stat().st_size
    assert response.file_to_stream is None
