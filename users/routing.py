"""WebSocket routes."""

from django.urls import re_path

from .consumers import UserListConsumer

websocket_urlpatterns = [
    re_path(r"^api/v1/users/ws/?$", UserListConsumer.as_asgi()),
]
