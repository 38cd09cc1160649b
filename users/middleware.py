"""Authentication of WebSocket handshakes."""

from channels.auth import AuthMiddlewareStack
from django.contrib.auth.models import AnonymousUser

# AnonymousUser keeps no state of its own, so every such socket can share one.
ANONYMOUS = AnonymousUser()


class SessionAuthWhenCookies:
    """
    Run channels' AuthMiddlewareStack for handshakes that carry cookies.

    A handshake without cookies (native apps, scripts) has no session to look
    up, so it gets an anonymous user directly: the session machinery (a copy of
    the scope per middleware, a session store, a user lookup) cost about 3 KB
    per idle socket (docs/performance.md).
    """

    def __init__(self, inner):
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        if any(name == b"cookie" for name, _ in scope["headers"]):
            return await self.with_session(scope, receive, send)
        return await self.inner({**scope, "user": ANONYMOUS}, receive, send)
