"""
Authentication of WebSocket handshakes (an app's token, a browser's session, or
nobody), and the refusal of those who may not read the list.
"""

import logging

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from ..outages import DATABASE_UNREACHABLE, cause
from ..permissions import may_read

# AnonymousUser keeps no state of its own, so every such socket can share one.
ANONYMOUS = AnonymousUser()

TOKEN_SUBPROTOCOL_PREFIX = "token."
# The ASGI extension that lets a refused handshake carry an HTTP status (uvicorn has it).
HTTP_RESPONSE_EXTENSION = "websocket.http.response"

logger = logging.getLogger(__name__)


def presented_token(scope) -> str | None:
    """Return the key of a ``token.<key>`` subprotocol the client offered, if any."""
    for subprotocol in scope.get("subprotocols", ()):
        if subprotocol.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return subprotocol.removeprefix(TOKEN_SUBPROTOCOL_PREFIX)
    return None


@database_sync_to_async
def active_user_with_token(key: str):
    """Return the active account holding token ``key``, or None."""
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


class HandshakeAuthentication:
    """
    Put the handshake's user in the scope.

    - An app (no cookies to rely on) presents its REST token as the
      subprotocol ``token.<key>``, beside ``users.v1`` or ``users.v2``, which
      the server selects: a browser's ``new WebSocket(url, ["users.v2", "token." + key])``
      can send it too, unlike an Authorization header, and unlike a query
      parameter it stays out of URLs and access logs. An unknown or revoked
      token is refused at the handshake (HTTP 403), not let in as anonymous.
    - A browser with cookies goes through channels' AuthMiddlewareStack: the
      admin's session.
    - Anything else (the Dart example's clients) is anonymous directly: the
      session machinery (a copy of the scope per middleware, a session store, a
      user lookup) costs memory on every idle socket. Its scope goes on without
      a ``user`` (``requester`` reads that as anonymous), since a copy to add
      one costs more (both measured in docs/performance.md).
    """

    def __init__(self, inner):
        self.inner = inner
        self.with_session = AuthMiddlewareStack(inner)

    async def __call__(self, scope, receive, send):
        key = presented_token(scope)
        if key is not None:
            try:
                user = await active_user_with_token(key)
            except DATABASE_UNREACHABLE as exc:
                return await refuse_for_now(scope, receive, send, exc)
            if user is None:
                return await WebsocketDenier()(scope, receive, send)
            return await self.inner({**scope, "user": user}, receive, send)
        if any(name == b"cookie" for name, _ in scope["headers"]):
            return await self.with_session(scope, receive, send)
        return await self.inner(scope, receive, send)


def requester(scope):
    """The account a handshake authenticated, or the anonymous user."""
    return scope.get("user", ANONYMOUS)


class ReadersOnly:
    """
    Refuse the handshake (HTTP 403) of a requester who may not read the list
    (``may_read``: anonymous, with USERS_ANONYMOUS_READS off), before any
    consumer is made for it.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if not may_read(requester(scope)):
            return await WebsocketDenier()(scope, receive, send)
        return await self.inner(scope, receive, send)


async def refuse_for_now(scope, receive, send, exc: Exception) -> None:
    """
    Answer a handshake whose token the database could not check with 503: the
    client tries again, where a 403 would tell it that its token is revoked.

    A server without the HTTP response extension (daphne) gets the exception,
    and answers 500.
    """
    if HTTP_RESPONSE_EXTENSION not in scope.get("extensions", {}):
        raise exc
    logger.warning("A socket's token could not be checked: %s", cause(exc))
    await receive()  # websocket.connect
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")]
    await send({"type": "websocket.http.response.start", "status": 503, "headers": headers})
    body = b"The database is unavailable; connect again.\n"
    await send({"type": "websocket.http.response.body", "body": body})
