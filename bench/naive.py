"""
The baseline: a live-list consumer written the way the Channels tutorial teaches.

Every socket joins the group itself and, on each group message, queries and
JSON-encodes the whole list on its own. bench/fanout.py runs it beside the
project's consumer to measure what the project's design buys.
"""

from usersite.asgi import django_asgi_app  # first: it sets Django up

# isort: split
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from users.models import User
from users.serializers import UserSerializer
from users.sockets.routing import SOCKET_PATH


class NaiveUserListConsumer(AsyncJsonWebsocketConsumer):
    groups = ["users"]

    async def connect(self):
        await self.accept()
        await self.send_json(await self.user_list())

    async def users_changed(self, event):
        await self.send_json(await self.user_list())

    @database_sync_to_async
    def user_list(self):
        return UserSerializer(User.objects.order_by("id"), many=True).data


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(
            URLRouter([re_path(rf"^{SOCKET_PATH[1:]}/?$", NaiveUserListConsumer.as_asgi())])
        ),
    }
)
