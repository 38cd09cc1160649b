"""WebSocket routes."""

from django.urls import re_path

from .consumers import UserChangesConsumer, UserListConsumer

SOCKET_PATH = "/api/v1/users/ws"  # the live list; with or without a trailing slash


class BySubprotocol:
    """
    Serve protocol v2 to clients that offer its subprotocol, v1 to every other.

    v1's clients (the Dart example's) offer none, so v1 stays the default.
    """

    def __init__(self, v1, v2):
        self.v1, self.v2 = v1, v2

    def __call__(self, scope, receive, send):
        offered = scope.get("subprotocols", ())
        application = self.v2 if UserChangesConsumer.subprotocol in offered else self.v1
        return application(scope, receive, send)


websocket_urlpatterns = [
    re_path(
        rf"^{SOCKET_PATH.removeprefix('/')}/?$",
        BySubprotocol(UserListConsumer.as_asgi(), UserChangesConsumer.as_asgi()),
    ),
]
