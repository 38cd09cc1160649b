"""WebSocket routes."""

from django.urls import re_path

from .consumers import UserListConsumer

SOCKET_PATH = "/api/v1/users/ws"  # the live list; with or without a trailing slash

websocket_urlpatterns = [
    re_path(rf"^{SOCKET_PATH.removeprefix('/')}/?$", UserListConsumer.as_asgi()),
]
