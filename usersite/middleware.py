"""Middleware of the project's own; the rest is Django's and WhiteNoise's (settings.MIDDLEWARE)."""


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
