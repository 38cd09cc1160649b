"""Middleware of the project's own; the rest is Django's and WhiteNoise's (settings.MIDDLEWARE)."""

import asyncio

from whitenoise.middleware import WhiteNoiseMiddleware


def one_thread_for_the_chain(get_response):
    """
    Make Django run the whole middleware chain in one thread.

    Under ASGI, Django runs an async-capable middleware built on
    MiddlewareMixin (all of Django's own) in async mode, with each of its hooks
    sent to a thread and back: two thread hops per middleware and request.
    Sync-only as the innermost middleware, this turns every middleware outside
    it sync: one hop for the chain, one for the view (docs/performance.md).
    """

    def middleware(request):
        return get_response(request)

    return middleware


class AsyncFileWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    """
    WhiteNoise, whose file responses read their file as an async iterator.

    WhiteNoise 6 hands Django a file, which it reads with a synchronous
    iterator; under ASGI Django then warns ("StreamingHttpResponse must consume
    synchronous iterators") for every static file and reads it in a thread.
    Here each block is read in a thread as the server sends it, off the event
    loop, and the response closes the file as before.
    """

    @staticmethod
    def serve(static_file, request):
        response = WhiteNoiseMiddleware.serve(static_file, request)
        if response.file_to_stream is not None:  # not for HEAD or 304: no body
            response.streaming_content = read_blocks(response.file_to_stream)
        return response


# Large enough that most static files take one thread hop, small enough that a
# large file is not held in memory whole.
BLOCK_SIZE = 256 * 1024


async def read_blocks(file):
    """Yield ``file``'s content block by block, each read in a thread."""
    while block := await asyncio.to_thread(file.read, BLOCK_SIZE):
        yield block
