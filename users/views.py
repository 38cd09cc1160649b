"""The REST API: ``/api/v1/users`` and ``/api/v1/users/<id>``."""

from rest_framework import generics
from rest_framework.response import Response

from . import services
from .models import User
from .permissions import CanWriteUsers
from .serializers import UserSerializer


class UserViewMixin:
    queryset = User.objects.order_by("id")
    serializer_class = UserSerializer
    permission_classes = [CanWriteUsers]


class UserList(UserViewMixin, generics.ListCreateAPIView):
    """List every user, or create one."""

    def list(self, request, *args, **kwargs):
        # Wrapped in an object, unlike the socket's bare array: the Dart
        # example's REST clients read ``users`` from it.
        users = self.get_serializer(self.get_queryset(), many=True).data
        return Response({"users": users})


class UserDetail(UserViewMixin, generics.RetrieveUpdateDestroyAPIView):
    """Read, change or delete one user."""

    def perform_destroy(self, instance):
        services.user_delete(instance)
