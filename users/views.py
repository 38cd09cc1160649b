"""
The live page at ``/``, the REST API (``/api/v1/users`` and
``/api/v1/users/<id>``) and ``/healthz``.
"""

import asyncio

import redis.asyncio as redis
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.generic import TemplateView
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.response import Response

from . import services
from .models import User
from .permissions import CanWriteUsers, may_write
from .routing import SOCKET_PATH
from .serializers import UserListSerializer, UserSerializer
from .throttling import WriteRateThrottle


class LiveListPage(TemplateView):
    """The live list in a browser, with a form that adds users over the socket."""

    template_name = "users/live_list.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        return super().get_context_data(
            socket_path=SOCKET_PATH,
            can_add=may_write(user, "add"),
            can_edit=user.is_staff and user.has_perm("users.change_user"),
            **kwargs,
        )


class UserViewMixin:
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
    permission_classes = [CanWriteUsers]
    throttle_classes = [WriteRateThrottle]


@extend_schema_view(get=extend_schema(responses=UserListSerializer))
class UserList(UserViewMixin, generics.ListCreateAPIView):
    """List every user, or create one."""

    def list(self, request, *args, **kwargs):
        return Response(UserListSerializer({"users": self.get_queryset()}).data)


class UserDetail(UserViewMixin, generics.RetrieveUpdateDestroyAPIView):
    """Read, change or delete one user."""

    def perform_destroy(self, instance):
        services.user_delete(instance)


HEALTH_CHECK_TIMEOUT = 3  # seconds: a probe must answer before the load balancer gives up


@database_sync_to_async
def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _check_channel_layer() -> None:
    if not settings.REDIS_URL:
        return  # the in-memory layer lives in this process
    client = redis.from_url(settings.REDIS_URL)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def health(request):
    """
    Report whether this process reaches its database and its channel layer.

    200 when both answer, 503 otherwise, so that a load balancer takes the
    process out of rotation: without the database nothing works, and without
    the channel layer its sockets miss other processes' changes.
    """
    checks = {"database": _check_database, "channel_layer": _check_channel_layer}
    report = {}
    for name, check in checks.items():
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT):
                await check()
        except Exception as exc:
            report[name] = f"error: {type(exc).__name__}: {exc}"
        else:
            report[name] = "ok"
    healthy = all(result == "ok" for result in report.values())
    return JsonResponse(report, status=200 if healthy else 503)
